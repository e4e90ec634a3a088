"""Backfill resumes after an interruption and leaves the live cursor alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from leadbridge.connectors.marketplace import file as file_source
from leadbridge.core.app import backfill
from leadbridge.core.settings import load_settings
from leadbridge.core.store import repo, state
from leadbridge.core.store.repo import Store
from tests.clihelp import EXIT_USAGE, run_cli


def test_an_interrupted_backfill_resumes_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    leads = tmp_path / "leads.jsonl"
    leads.write_text(
        "".join(
            json.dumps(
                {"LeadSource": "AzurePortal-Create|c.o", "UserDetails": {"Email": f"u{i}@x.io"}}
            )
            + "\n"
            for i in range(30)
        ),
        encoding="utf-8",
    )
    settings = load_settings(
        None,
        store=f"sqlite:///{tmp_path / 'lb.db'}",
        batch_size=10,
        sources=[{"name": "f", "kind": "leads_file", "path": str(leads)}],
    )
    store = Store(settings.store)
    with store.begin() as conn:
        repo.set_cursor(conn, "source:f", "live-cursor", repo.utcnow())

    real_fetch = file_source.LeadsFileSource.fetch
    seen: list[int] = []

    def dying_fetch(self: Any, cursor: str | None) -> Any:
        for index, item in enumerate(real_fetch(self, cursor)):
            if not seen and index == 15:
                seen.append(index)
                raise KeyboardInterrupt  # the operator's ^C, halfway through
            yield item

    monkeypatch.setattr(file_source.LeadsFileSource, "fetch", dying_fetch)
    with pytest.raises(KeyboardInterrupt):
        backfill.run(store, settings)
    with store.connect() as conn:
        resume_at = repo.get_cursor(conn, state.backfill_cursor("f").name)
        assert resume_at is not None and resume_at.endswith(":10")  # the last committed batch
        assert repo.get_cursor(conn, "source:f") == "live-cursor"

    report = backfill.run(store, settings)
    assert report.ingested[0].fetched == 20  # only what the interrupted run had not landed
    with store.connect() as conn:
        assert repo.get_cursor(conn, state.backfill_cursor("f").name) is None
        assert len(repo.lead_keys_active_between(conn, None, None)) == 30
        assert repo.get_cursor(conn, "source:f") == "live-cursor"


def _cli_config(tmp_path: Path, leads: Path) -> Path:
    path = tmp_path / "lb.yaml"
    path.write_text(
        f"store: sqlite:///{tmp_path / 'lb.db'}\n"
        f"sources:\n  - {{name: f, kind: leads_file, path: {leads}}}\n"
        "targets:\n"
        "  - {name: hook, kind: webhook, url: 'https://hooks.example.invalid/leads',"
        " secret: hook-s3cret-value}\n",
        encoding="utf-8",
    )
    return path


def _leads_file(tmp_path: Path, count: int) -> Path:
    leads = tmp_path / "leads.jsonl"
    leads.write_text(
        "".join(
            json.dumps(
                {"LeadSource": "AzurePortal-Create|c.o", "UserDetails": {"Email": f"u{i}@x.io"}}
            )
            + "\n"
            for i in range(count)
        ),
        encoding="utf-8",
    )
    return leads


@pytest.mark.parametrize("config_first", [True, False], ids=["config-before", "config-after"])
def test_backfill_dry_run_lists_what_would_be_sent(tmp_path: Path, config_first: bool) -> None:
    """It used to exit 1 with a TypeError after printing the rows (a test that only read
    the rows passed)."""
    config = _cli_config(tmp_path, _leads_file(tmp_path, 3))
    run_cli(["--config", config, "ingest"])
    command = ["backfill", "--dry-run"]
    args = ["--config", config, *command] if config_first else [*command, "--config", config]
    result = run_cli(args)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 3
    assert all(row["target"] == "hook" and row["would_send"] for row in rows)
    assert "dry run: 3 of 3 lead pushes would be sent" in result.stderr


def test_backfill_of_a_source_whose_file_is_missing_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "gone.jsonl"
    config = _cli_config(tmp_path, missing)
    result = run_cli(["backfill", "--config", config], expect=EXIT_USAGE)
    assert "Traceback" not in result.output
    assert f"sources[f].path: {missing} does not exist" in result.output
    assert "fix: correct the path" in result.output


def test_backfill_reads_and_queues_a_page_of_leads_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store of a million leads is listed and queued in the memory of a page: this fails
    if every lead were loaded, or every outbox row built, at once."""
    config = _cli_config(tmp_path, _leads_file(tmp_path, 25))
    run_cli(["--config", config, "ingest"])
    settings = load_settings(config)
    store = Store(settings.store)
    monkeypatch.setattr(backfill, "PAGE", 10)
    seen: dict[str, list[int]] = {}

    def spy(name: str, keys_at: int) -> None:
        real = getattr(repo, name)

        def counted(conn: Any, *args: Any) -> Any:
            seen.setdefault(name, []).append(len(args[keys_at]))
            return real(conn, *args)

        monkeypatch.setattr(repo, name, counted)

    spy("load_leads", 0)
    spy("load_links", 1)
    spy("enqueue", 0)
    rows = list(backfill.dry_run(store, settings))
    assert len(rows) == 25 and all(row["would_send"] for row in rows)
    assert seen["load_leads"] == seen["load_links"] == [10, 10, 5]
    monkeypatch.setattr(backfill, "deliver", lambda *args, **kwargs: None)  # queue only
    assert backfill.run(store, settings, sources=["none"]).queued == 25
    assert seen["enqueue"] == [10, 10, 5]
    with store.connect() as conn:
        assert repo.outbox_depth(conn) == {"hook": 25}
