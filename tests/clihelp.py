"""Running the `leadbridge` command in a test: `run_cli(args, expect=…)`.

A CLI test that doesn't look at the exit code passes on a crash (typer's runner catches
the exception and the output may still hold what the test looks for). `run_cli` fails the
test on any exit code it wasn't told to expect, and on any crash or printed traceback even
when the code matches (the runner reports a crash as exit 1, also "needs attention"). It shows
what an operator would have seen: the command, its output (stdout and stderr) and, when it
crashed, the traceback.

This is the only place a test runs the typer app in-process (tests/test_cli_tests.py
enforces it); tests/e2e run `leadbridge` as a subprocess and check its return code.

    from tests.clihelp import run_cli

    result = run_cli(["--config", config, "status", "--format", "json"])
    run_cli(["--config", config, "ingest"], expect=1)  # finished, something quarantined
"""

from __future__ import annotations

import logging
import os
import shlex
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from typer.testing import CliRunner

from leadbridge.core.app.cli import EXIT_ATTENTION, EXIT_USAGE, app

EXIT_OK = 0
__all__ = ["EXIT_ATTENTION", "EXIT_OK", "EXIT_USAGE", "run_cli"]


def run_cli(
    args: Sequence[str | os.PathLike[str]],
    expect: int = EXIT_OK,
    *,
    env: Mapping[str, str | None] | None = None,
    input: str | None = None,
) -> Any:
    """Invoke the typer app with `args` (paths are turned into strings); return typer's
    Result (`.stdout`, `.stderr`, `.output`, `.exit_code`) when it exits with `expect`.
    `env` sets (or with None, unsets) environment variables for this run only."""
    words = [os.fspath(arg) for arg in args]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        result = CliRunner().invoke(app, words, env=env, input=input)
    finally:  # the command's log handler writes to the runner's stream, closed after the run
        root.handlers[:] = handlers
        root.setLevel(level)
    if result.exit_code != expect or _crashed(result) or TRACEBACK in result.output:
        pytest.fail(_explain(words, expect, result), pytrace=False)
    return result


TRACEBACK = "Traceback (most recent call last)"


def _crashed(result: Any) -> bool:
    """An exception other than the exit typer raises for every code: a bug, never a
    documented outcome, whatever exit code the runner gave it."""
    return result.exception is not None and not isinstance(result.exception, SystemExit)


def _explain(words: list[str], expect: int, result: Any) -> str:
    why = f"exited {result.exit_code}, expected {expect}"
    if _crashed(result):
        why += f"; crashed with {type(result.exception).__name__}"
    elif TRACEBACK in result.output:
        why += "; printed a traceback (an operator sees one line and the fix, never that)"
    lines = [
        f"leadbridge {shlex.join(words)}",
        why,
        "--- output (stdout and stderr) ---",
        result.output.rstrip() or "(none)",
    ]
    if _crashed(result):
        lines += ["--- traceback ---", "".join(traceback.format_exception(*result.exc_info))]
    return "\n".join(lines)
