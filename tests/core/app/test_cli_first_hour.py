"""The first hour with leadbridge: every mistake a newcomer makes gets one line that names
what is wrong and the fix, with exit 2 — never a traceback, never a silent default."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.clihelp import EXIT_USAGE, run_cli

# Port 1 on the loopback: nothing listens there, so the connection is refused at once.
DOWN_STORE = "postgresql://lb:Sup3r-s3cret-pw@127.0.0.1:1/leads"


def _config(tmp_path: Path, text: str, name: str = "lb.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _one_line(output: str) -> str:
    """The message of a refused command: one line, no traceback."""
    assert "Traceback" not in output and 'File "' not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


@pytest.fixture
def no_config_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh folder, LEADBRIDGE_CONFIG unset: what a newcomer has before writing a config."""
    monkeypatch.delenv("LEADBRIDGE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "command",
    [["status"], ["config", "check"], ["config", "show"], ["run"], ["leads", "list"]],
)
def test_a_command_that_needs_a_config_without_one_says_both_ways_to_give_it(
    no_config_anywhere: Path, command: list[str]
) -> None:
    result = run_cli(command, expect=EXIT_USAGE)
    line = _one_line(result.output)
    assert "no configuration given" in line
    assert "--config PATH" in line and "LEADBRIDGE_CONFIG=PATH" in line
    assert "configuration OK" not in result.output
    assert list(no_config_anywhere.iterdir()) == []  # no ./leadbridge.db made on the side


def test_the_config_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, f"store: sqlite:///{tmp_path / 'lb.db'}\n")
    monkeypatch.setenv("LEADBRIDGE_CONFIG", str(config))
    assert "configuration OK" in run_cli(["config", "check"]).output


def test_demo_and_sandbox_need_no_config(no_config_anywhere: Path) -> None:
    # Each stops at its own check of its own arguments, not at a missing config (the demo
    # itself runs without one in tests/e2e/test_demo.py).
    sandbox = run_cli(["sandbox", "--crm", "carrier-pigeon"], expect=EXIT_USAGE)
    assert "unknown CRM" in sandbox.output and "no configuration" not in sandbox.output
    (no_config_anywhere / "leadbridge.db").write_bytes(b"someone's leads")
    demo = run_cli(["demo", "--workdir", str(no_config_anywhere)], expect=EXIT_USAGE)
    assert "no configuration" not in demo.output


def test_version_prints_the_package_version() -> None:
    result = run_cli(["--version"])
    assert result.stdout.strip() == f"leadbridge {version('leadbridge')}"


def test_run_with_nothing_to_do_refuses_to_start(tmp_path: Path) -> None:
    config = _config(tmp_path, f"store: sqlite:///{tmp_path / 'lb.db'}\n")
    line = _one_line(run_cli(["run", "--config", config], expect=EXIT_USAGE).output)
    assert "nothing to run" in line and "no sources and no targets" in line
    assert "sources:" in line and "targets:" in line  # the fix
    assert not (tmp_path / "lb.db").exists()  # refused before anything was opened


# --- a store that can't be opened ------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["leads", "list"],
        ["ingest"],
        ["deliver"],
        ["dlq", "list"],
        ["db", "upgrade"],
        ["backfill", "--dry-run"],
        ["run"],
    ],
)
def test_a_store_that_is_down_is_one_line_naming_it_with_the_password_masked(
    tmp_path: Path, command: list[str]
) -> None:
    leads = tmp_path / "leads.jsonl"
    leads.write_text("", encoding="utf-8")
    config = _config(
        tmp_path,
        f"store: {DOWN_STORE}\nsources:\n  - {{name: f, kind: leads_file, path: {leads}}}\n",
    )
    result = run_cli(["--config", config, *command], expect=EXIT_USAGE)
    line = _one_line(result.output)
    assert "the store postgresql://lb:***@127.0.0.1:1/leads can't be opened" in line
    assert "refused" in line.lower() and "fix: check `store`" in line
    assert "Sup3r-s3cret-pw" not in result.output


def test_an_unsupported_store_is_caught_by_config_check(tmp_path: Path) -> None:
    config = _config(tmp_path, "store: mysql://lb:pw@db.internal/leads\n")
    result = run_cli(["--config", config, "config", "check"], expect=EXIT_USAGE)
    assert "store: mysql is not supported as a store" in result.output
    assert "fix: use sqlite:///" in result.output and "postgresql://" in result.output
    assert "Traceback" not in result.output


def test_config_check_online_opens_the_store(tmp_path: Path) -> None:
    config = _config(tmp_path, f"store: {DOWN_STORE}\n")
    offline = run_cli(["--config", config, "config", "check"])
    assert "configuration OK" in offline.output
    online = run_cli(["--config", config, "config", "check", "--online"], expect=EXIT_USAGE)
    assert "store: can't be opened" in online.output and "refused" in online.output.lower()
    assert "Sup3r-s3cret-pw" not in online.output


# --- a source that can't be read -------------------------------------------------------


def test_a_missing_leads_file_is_a_warning_for_check_and_one_line_for_ingest(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "drop" / "leads.jsonl"
    config = _config(
        tmp_path,
        f"store: sqlite:///{tmp_path / 'lb.db'}\n"
        f"sources:\n  - {{name: drop, kind: leads_file, path: {missing}}}\n",
    )
    check = run_cli(["--config", config, "config", "check"])  # a drop folder: exit 0
    assert "1 warning(s)" in check.output
    assert f"sources[drop].path: {missing} does not exist" in check.output
    assert "fix: correct the path" in check.output

    line = _one_line(run_cli(["--config", config, "ingest"], expect=EXIT_USAGE).output)
    assert line.startswith("source drop can't be read:") and str(missing) in line
    assert "fix: check sources[drop]" in line


# --- options before or after the command -----------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Path:
    leads = tmp_path / "leads.jsonl"
    payload = {"LeadSource": "AzurePortal-Create|c.o", "UserDetails": {"Email": "u@x.io"}}
    leads.write_text(json.dumps(payload) + "\n", encoding="utf-8")
    return _config(
        tmp_path,
        f"store: sqlite:///{tmp_path / 'lb.db'}\n"
        f"sources:\n  - {{name: f, kind: leads_file, path: {leads}}}\n",
    )


@pytest.mark.parametrize(
    "command",
    [
        ["status", "--format", "json"],
        ["config", "show"],
        ["leads", "list", "--format", "json"],
        ["dlq", "list", "--format", "json"],
    ],
)
def test_config_and_log_format_work_before_and_after_the_command(
    config: Path, command: list[str]
) -> None:
    before = run_cli(["--config", config, "--log-format", "text", *command])
    after = run_cli([*command, "--config", config, "--log-format", "text"])
    short = run_cli([*command, "-c", config])
    assert before.stdout == after.stdout == short.stdout


def test_config_after_ingest_a_nested_command_and_run(config: Path, tmp_path: Path) -> None:
    run_cli(["ingest", "--config", config])
    status = json.loads(run_cli(["status", "--format", "json", "--config", config]).stdout)
    assert status["sources"]["f"]["raw_leads"] == 1  # the file the config names was read
    assert "configuration OK: 1 source(s)" in run_cli(["config", "check", "-c", config]).output
    empty = _config(tmp_path, f"store: sqlite:///{tmp_path / 'e.db'}\n", name="empty.yaml")
    # `run` read the file given after it: it has nothing to run (not "no configuration")
    assert "nothing to run" in run_cli(["run", "--config", empty], expect=EXIT_USAGE).output


def test_an_option_after_the_command_wins_over_one_before(config: Path, tmp_path: Path) -> None:
    other = _config(tmp_path, "store: mysql://x@y/z\n", name="other.yaml")
    result = run_cli(["--config", other, "config", "check", "--config", config])
    assert "configuration OK" in result.output


def test_a_bad_log_format_after_the_command_is_a_usage_error(config: Path) -> None:
    result = run_cli(["status", "--config", config, "--log-format", "yaml"], expect=EXIT_USAGE)
    assert "--log-format" in result.output
