"""Store faults: SQLite locked by another writer in the middle of a run — the work waits
(busy timeout) and resumes, nothing lost, nothing twice."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from leadbridge.connectors.marketplace.file import LeadsFileConfig, LeadsFileSource
from leadbridge.core import pipeline
from leadbridge.core.settings import load_settings
from leadbridge.core.store.repo import Store
from leadbridge.core.synthetic import write_jsonl


def test_a_locked_sqlite_store_is_waited_out(tmp_path: Path) -> None:
    leads_file = tmp_path / "leads.jsonl"
    unique = write_jsonl(leads_file, 2_000)
    db = tmp_path / "lb.db"
    settings = load_settings(None, store=f"sqlite:///{db}", batch_size=100)
    store = Store(settings.store)
    holding = threading.Event()

    def other_writer() -> None:
        """Another process (a backup, an operator's sqlite3 shell) takes the write lock."""
        conn = sqlite3.connect(db, isolation_level=None, timeout=30)
        conn.execute("BEGIN IMMEDIATE")
        holding.set()
        time.sleep(2.0)
        conn.execute("COMMIT")
        conn.close()

    landed = 0

    def take_lock_mid_run(report: pipeline.IngestReport) -> None:
        nonlocal landed
        landed = report.fetched
        if report.landed_batches == 3 and not holding.is_set():
            threading.Thread(target=other_writer, daemon=True).start()
            holding.wait(5)

    started = time.monotonic()
    report = pipeline.ingest(
        LeadsFileSource(LeadsFileConfig(name="f", path=leads_file)),
        store,
        settings,
        on_batch=take_lock_mid_run,
    )
    assert holding.is_set() and time.monotonic() - started >= 2.0  # it did have to wait
    assert report.fetched == 2_000 and report.quarantined == 0
    with store.connect() as conn:
        raws = conn.exec_driver_sql(
            "SELECT count(*), count(DISTINCT source_key) FROM raw_leads"
        ).fetchone()
        leads = conn.exec_driver_sql("SELECT count(*) FROM leads").fetchone()[0]
    assert tuple(raws) == (2_000, 2_000) and leads == unique
    store.dispose()
