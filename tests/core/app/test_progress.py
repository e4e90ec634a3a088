"""Progress of a long ingest (issue 21): a bar with rate and time left on a terminal, a JSON
line in the logs every few seconds elsewhere, and sources that can count what they hold."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from leadbridge.connectors.marketplace.file import LeadsFileConfig, LeadsFileSource
from leadbridge.core.app.progress import RunProgress
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import Settings, load_settings
from leadbridge.core.store.repo import Store


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _line(i: int) -> str:
    return json.dumps(
        {
            "LeadSource": "AzurePortal-Create|contoso.offer",
            "UserDetails": {"FirstName": f"F{i}", "LastName": "L", "Email": f"u{i}@x.example"},
        }
    )


def _jsonl(path: Path, count: int, *, last_newline: bool = True) -> Path:
    text = "\n".join(_line(i) for i in range(count))
    path.write_text(text + ("\n" if last_newline else ""), "utf-8")
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(None, store=f"sqlite:///{tmp_path / 'lb.db'}", batch_size=10)


def test_off_a_terminal_a_progress_line_is_logged_every_interval_and_at_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    progress = RunProgress(
        console=Console(file=io.StringIO()), terminal=False, every=10, clock=clock
    )
    with caplog.at_level(logging.INFO, logger="leadbridge.progress"), progress:
        progress.start("contoso-file", 1000)
        clock.now += 4
        progress.update(200)  # 4 s in: not yet
        clock.now += 6
        progress.update(500)  # 10 s in: a line
        clock.now += 5
        progress.update(700)  # 5 s after the last line: not yet
        clock.now += 5
        progress.update(1000)
        progress.finish()
    lines = [(r.getMessage(), r.__dict__) for r in caplog.records]
    assert [message for message, _ in lines] == [
        "ingest progress",
        "ingest progress",
        "ingest done",
    ]
    first = lines[0][1]
    assert (first["source"], first["done"], first["total"]) == ("contoso-file", 500, 1000)
    assert (first["rate_per_s"], first["elapsed_s"], first["eta_s"]) == (50.0, 10.0, 10.0)
    done = lines[2][1]
    assert (done["done"], done["eta_s"], done["elapsed_s"]) == (1000, 0.0, 20.0)


def test_an_unknown_total_has_a_rate_but_no_time_left(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    progress = RunProgress(
        console=Console(file=io.StringIO()), terminal=False, every=1, clock=clock
    )
    with caplog.at_level(logging.INFO, logger="leadbridge.progress"), progress:
        progress.start("table", None)
        clock.now += 2
        progress.update(300)
    [record] = caplog.records
    assert (record.__dict__["rate_per_s"], record.__dict__["eta_s"]) == (150.0, None)


def test_on_a_terminal_a_bar_shows_the_count_the_rate_and_the_time_left() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    clock = _Clock()
    with RunProgress(console=console, terminal=True, clock=clock) as progress:
        progress.start("contoso-file", 1000)
        clock.now += 1
        progress.update(100)
        clock.now += 2
        progress.update(400)
        assert progress.bar is not None
        progress.bar.refresh()
        shown = screen.getvalue()
        progress.finish()
    assert "contoso-file" in shown
    assert "400/1000" in shown
    assert "150/s" in shown  # the rate between the batches: 300 in 2 s
    assert "left 0:00:04" in shown  # 600 more at 150/s


def test_a_file_counts_its_records_and_what_is_left_after_the_cursor(tmp_path: Path) -> None:
    source = LeadsFileSource(LeadsFileConfig(name="f", path=_jsonl(tmp_path / "a.jsonl", 25)))
    assert source.expected_records(None) == 25
    cursor = [position for _, position in source.fetch(None)][9]  # ten records read
    assert source.expected_records(cursor) == 15
    unterminated = _jsonl(tmp_path / "b.jsonl", 7, last_newline=False)
    assert LeadsFileSource(LeadsFileConfig(name="b", path=unterminated)).expected_records(None) == 7


def test_a_csv_does_not_count_its_header(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(
        "Lead Source,Email\nAzurePortal|a.b,u1@x.example\nAzurePortal|a.b,u2@x.example\n"
    )
    assert LeadsFileSource(LeadsFileConfig(name="c", path=path)).expected_records(None) == 2


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def start(self, what: str, total: int | None) -> None:
        self.calls.append(("start", what, total))

    def update(self, done: int) -> None:
        self.calls.append(("update", done))

    def finish(self) -> None:
        self.calls.append(("finish",))


def test_ingest_tells_its_watcher_the_total_each_batch_and_the_end(
    settings: Settings, tmp_path: Path
) -> None:
    store = Store(settings.store)
    source = LeadsFileSource(LeadsFileConfig(name="f", path=_jsonl(tmp_path / "a.jsonl", 25)))
    watcher = _Recorder()
    report = pipeline.ingest(source, store, settings, watcher=watcher)
    assert report.fetched == 25
    assert watcher.calls == [
        ("start", "f", 25),
        ("update", 10),
        ("update", 20),
        ("update", 25),
        ("finish",),
    ]
    again = _Recorder()
    pipeline.ingest(source, store, settings, watcher=again)
    assert again.calls == [("start", "f", 0), ("update", 0), ("finish",)]  # nothing left
    store.dispose()


def _json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def test_the_ingest_command_off_a_terminal_logs_its_progress_as_json(tmp_path: Path) -> None:
    from tests.clihelp import run_cli

    leads = _jsonl(tmp_path / "leads.jsonl", 25)
    config = tmp_path / "lb.yaml"
    config.write_text(
        f"store: sqlite:///{tmp_path / 'lb.db'}\nlog_format: json\nbatch_size: 10\n"
        f"sources:\n  - name: capture\n    kind: leads_file\n    path: {leads}\n",
        encoding="utf-8",
    )
    result = run_cli(["--config", config, "ingest"])
    [done] = [line for line in _json_lines(result.stderr) if line.get("msg") == "ingest done"]
    assert (done["source"], done["done"], done["total"], done["eta_s"]) == ("capture", 25, 25, 0.0)
    assert done["rate_per_s"] > 0
