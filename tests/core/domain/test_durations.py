"""Durations: read the way ops write them, and written back the same way (`config show`)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from leadbridge.core.domain.durations import format_duration, parse_duration
from tests.clihelp import run_cli


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2m", 120), ("10s", 10), ("1h", 3600), ("2d", 172_800), ("250ms", 0.25), ("90s", 90)],
)
def test_a_duration_is_written_as_it_is_read(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert format_duration(timedelta(seconds=seconds)) == text
    assert parse_duration(format_duration(timedelta(seconds=seconds))) == timedelta(seconds=seconds)


def test_config_show_writes_durations_as_the_yaml_does_and_leaves_out_unset_keys(
    tmp_path: Path,
) -> None:
    config = tmp_path / "lb.yaml"
    config.write_text(
        f"store: sqlite:///{tmp_path / 'lb.db'}\n"
        "sources:\n"
        f"  - {{name: drop, kind: leads_file, path: {tmp_path / 'x.jsonl'}, every: 2m}}\n",
        "utf-8",
    )
    shown = json.loads(run_cli(["--config", config, "config", "show"]).stdout)
    assert shown["sources"][0]["every"] == "2m"
    assert shown["http"]["request_timeout"] == "10s"
    assert "PT" not in json.dumps(shown) and "null" not in json.dumps(shown)
