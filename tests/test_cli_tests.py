"""How the test suite runs the CLI: in-process only through `tests/clihelp.run_cli`, which
fails a test on an exit code it did not expect and on a crash — so a CLI test can't pass on
a traceback because the output happened to hold what it looked for."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from leadbridge.core.app import status
from tests.clihelp import EXIT_ATTENTION, run_cli

TESTS = Path(__file__).resolve().parent
HELPER = TESTS / "clihelp.py"


def _test_sources() -> list[Path]:
    """Every Python file of the suite but the helper (node_modules holds Azurite, not tests)."""
    return sorted(
        path
        for path in TESTS.rglob("*.py")
        if path != HELPER and "node_modules" not in path.relative_to(TESTS).parts
    )


def _bypasses(tree: ast.AST) -> list[tuple[int, str]]:
    """Where a file runs the typer app itself: typer's or click's runner, or any `.invoke(`.
    Read from the syntax tree, so a word in a docstring or a comment is not a call."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("typer.testing", "click.testing"):
            found.append((node.lineno, f"from {node.module} import …"))
        elif isinstance(node, ast.Name) and node.id == "CliRunner":
            found.append((node.lineno, "CliRunner"))
        elif isinstance(node, ast.Attribute) and node.attr == "CliRunner":
            found.append((node.lineno, "….CliRunner"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "invoke"
        ):
            found.append((node.lineno, ".invoke(…)"))
    return found


def test_only_clihelp_runs_the_cli_in_process() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{line}: {what}"
        for path in _test_sources()
        for line, what in _bypasses(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    ]
    assert not offenders, (
        "run the CLI through tests.clihelp.run_cli(args, expect=…), which checks the exit "
        "code and shows the traceback:\n" + "\n".join(offenders)
    )


def test_the_guard_sees_every_way_round_it() -> None:
    caught = _bypasses(
        ast.parse(
            "from typer.testing import CliRunner\n"
            "import typer.testing\n"
            "typer.testing.CliRunner().invoke(app, [])\n"
            "runner.invoke(app, ['status'])\n"
            '"""CliRunner().invoke(app) in a docstring is not a call"""\n'
        )
    )
    assert sorted(line for line, _ in caught) == [1, 3, 3, 4]


def test_a_crash_fails_the_test_even_when_its_exit_code_was_expected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """typer's runner reports an exception as exit 1, which is also the documented "needs
    attention": `run_cli(…, expect=1)` must still fail, with the traceback."""
    config = tmp_path / "lb.yaml"
    config.write_text(f"store: sqlite:///{tmp_path / 'lb.db'}\n", encoding="utf-8")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in status")

    monkeypatch.setattr(status, "status", broken)
    with pytest.raises(pytest.fail.Exception) as failed:
        run_cli(["--config", config, "status"], expect=EXIT_ATTENTION)
    message = str(failed.value)
    assert "crashed with RuntimeError" in message
    assert "Traceback (most recent call last)" in message and "a bug in status" in message
