"""Store faults: SQLite locked by another writer in the middle of a run — the work waits
(busy timeout) and resumes; PostgreSQL restarted under two cluster replicas in the middle of
delivery — they reconnect and finish. Nothing lost, nothing twice."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from leadbridge.connectors.marketplace.file import LeadsFileConfig, LeadsFileSource
from leadbridge.core.app.synthetic import write_jsonl
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import load_settings
from leadbridge.core.store.repo import Store

from ..conftest import need
from ..e2e.helpers import (
    cluster_config,
    sandbox_records,
    start_replicas,
    start_sandboxes,
    stop_all,
    wait_until,
)


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


def _restart_postgresql() -> float:
    """Restart the local server (Debian's pg_ctlcluster); returns how long it was away."""
    (version,) = os.listdir("/etc/postgresql")
    started = time.monotonic()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return time.monotonic() - started


def _can_restart(pg_url: str) -> bool:
    local = urlsplit(pg_url).hostname in ("127.0.0.1", "localhost", "::1")
    return local and getpass.getuser() == "root" and shutil.which("pg_ctlcluster") is not None


@pytest.mark.slow
def test_postgresql_restarted_under_two_cluster_replicas(tmp_path: Path, pg_url: str) -> None:
    need(
        _can_restart(pg_url),
        "restarting PostgreSQL needs the local server, root and pg_ctlcluster",
    )
    leads_file = tmp_path / "leads.jsonl"
    unique = write_jsonl(leads_file, 1_500, seed=3)
    sandbox_proc, all_targets = start_sandboxes(tmp_path, latency_ms=30)
    targets = [t for t in all_targets if t["kind"] in ("salesforce", "dataverse", "webhook")]
    for target in targets:
        target.update(every="1s", batch_size=20)  # delivery takes a while: restart inside it
    config = cluster_config(
        tmp_path,
        pg_url,
        leads_file,
        targets,
        batch_size=100,
        delivery={"claim_ttl": "5s", "retry_base": "1s", "retry_max": "2s"},
    )
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs, _ = start_replicas(config, 2, tmp_path)
        sales = next(t for t in targets if t["kind"] == "salesforce")
        wait_until(lambda: len(sandbox_records(sales)) >= 100, 120, "delivery to be underway")
        before = len(sandbox_records(sales))
        away = _restart_postgresql()
        back = time.monotonic()
        engine.dispose()  # the test's own connections died with the server too

        def progress() -> dict[str, Any]:
            with engine.connect() as conn:
                one = lambda sql: conn.execute(sa.text(sql)).scalar()  # noqa: E731
                state = {
                    "raw": one("SELECT count(*) FROM raw_leads"),
                    "new": one("SELECT count(*) FROM raw_leads WHERE status = 'new'"),
                    "outbox": one("SELECT count(*) FROM outbox"),
                }
            return state | {t["kind"]: len(sandbox_records(t)) for t in targets}

        def settled() -> bool:
            now = progress()
            return (now["raw"], now["new"], now["outbox"]) == (1_500, 0, 0) and all(
                now[t["kind"]] >= unique for t in targets
            )

        wait_until(settled, 180, "every lead in every CRM after the restart", progress)
        recovered = time.monotonic() - back
        assert before < unique, "the restart came after delivery had finished"
        assert all(proc.poll() is None for proc in procs), "a replica died with the database"
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=40) == 0
        for target in targets:
            key = {"salesforce": "LeadBridge_Key__c", "dataverse": "lb_leadkey"}.get(
                target["kind"], "lead_key"
            )
            keys = [r[key] for r in sandbox_records(target)]
            assert len(keys) == len(set(keys)) == unique, target["kind"]
        with engine.connect() as conn:
            actions = conn.execute(sa.text("SELECT count(*) FROM events WHERE kind = 'action'"))
            assert actions.scalar() == 1_500  # every raw lead processed exactly once
            dead = conn.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar()
            assert dead == 0
        print(f"postgresql away {away:.1f} s; every lead delivered {recovered:.1f} s after")
    finally:
        engine.dispose()
        stop_all(procs, sandbox_proc)
