"""Retention: personal data leaves landed raw leads once past `retention`, reports don't move."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from leadbridge.core.app.operations import reprocess_quarantined
from leadbridge.core.domain.vocabulary import QuarantineReason
from leadbridge.core.ingest.redact import REDACTED_MARK
from leadbridge.core.settings import RetentionSettings, load_settings
from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.store.tables import quarantine, raw_leads
from leadbridge.core.sync.retention import prune
from tests.clihelp import EXIT_ATTENTION, run_cli
from tests.conftest import ROOT

SAMPLES = ROOT / "config" / "sample-leads.jsonl"  # line 13 malformed, one Microsoft test lead


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "lb.yaml"
    config.write_text(
        f"store: sqlite:///{tmp_path / 'lb.db'}\nlog_format: text\n"
        f"sources:\n  - name: samples\n    kind: leads_file\n    path: {SAMPLES}\n",
        encoding="utf-8",
    )
    return config


def _funnel(config: Path) -> dict[str, Any]:
    shown = run_cli(["--config", config, "report", "funnel", "--format", "json", "--by", "offer"])
    report: dict[str, Any] = json.loads(shown.stdout)
    report.pop("as_of")  # when it was made is not a figure
    return report


def _raws(store: Store) -> list[Any]:
    with store.connect() as conn:
        return list(conn.execute(select(raw_leads).order_by(raw_leads.c.id)))


def test_a_prune_redacts_what_is_past_retention_and_every_report_figure_stays(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    run_cli(["--config", config, "ingest"], expect=EXIT_ATTENTION)  # line 13: malformed
    before = _funnel(config)
    assert before["total"]["raw_leads"] > 10 and before["groups"]  # figures to compare
    settings = load_settings(config)
    store = Store(settings.store)
    emails = [json.dumps(r.payload).lower() for r in _raws(store)]
    assert any("@" in text for text in emails)

    # Nothing is old yet: nothing changes.
    assert prune(store, settings.retention, utcnow()).total == 0

    later = utcnow() + timedelta(days=731)
    done = prune(store, settings.retention, later)
    raws = _raws(store)
    quarantined = [r for r in raws if r.status == "quarantined"]
    assert done.raw_redacted == len(raws) - len(quarantined) > 0
    assert done.quarantine_redacted == len(quarantined) == 2  # malformed + the test lead
    for row in raws:
        text = json.dumps(row.payload)
        assert "@" not in text, "an address left in a redacted payload"
        assert REDACTED_MARK in row.payload and row.redacted_at is not None
    processed = [r for r in raws if r.status == "processed"]
    offer = ("offer_id", "offer_title")  # what reports group by stays
    assert all(r.payload.get("action") and any(map(r.payload.get, offer)) for r in processed)
    with store.connect() as conn:
        messages = set(conn.execute(select(quarantine.c.message)).scalars())
    assert messages == {"redacted after its retention (retention.quarantine_days)"}

    assert _funnel(config) == before  # every figure, every group
    assert prune(store, settings.retention, later).total == 0  # done once, and resumable

    # A redacted record can't be processed again: it no longer holds what that needs.
    again = reprocess_quarantined(settings, store, reason=QuarantineReason.TEST, actor="test")
    assert again.released == 0


def test_retention_windows_are_separate_and_null_keeps_forever(tmp_path: Path) -> None:
    config = _config(tmp_path)
    run_cli(["--config", config, "ingest"], expect=EXIT_ATTENTION)
    store = Store(load_settings(config).store)
    in_100_days = utcnow() + timedelta(days=100)
    only_quarantine = RetentionSettings(raw_days=None, quarantine_days=90)
    done = prune(store, only_quarantine, in_100_days)
    assert (done.raw_redacted, done.quarantine_redacted) == (0, 2)
    assert prune(store, RetentionSettings(raw_days=None, quarantine_days=None), utcnow()).total == 0


def test_db_prune_says_what_it_did(tmp_path: Path) -> None:
    config = _config(tmp_path)
    run_cli(["--config", config, "ingest"], expect=EXIT_ATTENTION)
    said = run_cli(["--config", config, "db", "prune"])
    assert "redacted 0 raw lead(s) older than 730 days" in " ".join(said.stdout.split())
