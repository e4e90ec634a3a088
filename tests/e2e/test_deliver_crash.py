"""Kill `leadbridge deliver` with SIGKILL mid-run, start it again: every unique lead is in
every sandbox CRM exactly once, and nothing is left queued."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from leadbridge.core.app.synthetic import write_jsonl

from .helpers import (
    LEADBRIDGE,
    env,
    sandbox_records,
    start_sandboxes,
    stop_sandboxes,
    write_config,
)

COUNT = 1_500


@pytest.mark.slow
def test_sigkill_mid_delivery_then_restart_delivers_each_lead_once(tmp_path: Path) -> None:
    leads_file = tmp_path / "leads.jsonl"
    write_jsonl(leads_file, COUNT)
    sandbox_proc, targets = start_sandboxes(tmp_path, latency_ms=30)
    try:
        for target in targets:
            target["batch_size"] = 25  # many small batches, so the kill lands mid-run
        db = tmp_path / "lb.db"
        config = write_config(
            tmp_path,
            db,
            [{"name": "f", "kind": "leads_file", "path": str(leads_file)}],
            targets,
            delivery={"claim_ttl": "1s"},
        )
        run = [*LEADBRIDGE, "--config", str(config)]
        subprocess.run([*run, "ingest"], env=env(), check=True, capture_output=True, timeout=300)
        with sqlite3.connect(db) as conn:
            keys = {k for (k,) in conn.execute("SELECT lead_key FROM leads")}
            emails = {e for (e,) in conn.execute("SELECT email FROM leads")}

        proc = subprocess.Popen(
            [*run, "deliver"], env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(sandbox_records(targets[0])) < 200:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=30)
        assert code == -signal.SIGKILL, f"deliver exited {code} before it was killed"
        partial = len(sandbox_records(targets[0]))
        assert 0 < partial < len(keys), "the kill must land mid-run"

        time.sleep(1.2)  # the dead process's claims expire (claim_ttl: 1s)
        rerun = subprocess.run(
            [*run, "deliver"], env=env(), capture_output=True, text=True, timeout=600
        )
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr

        for target in targets:
            records = sandbox_records(target)
            if target["kind"] == "hubspot":  # one contact per person
                assert sorted(r["email"] for r in records) == sorted(emails)
                assert {k for r in records for k in [r["leadbridge_lead_key"]]} <= keys
            else:
                field = {
                    "salesforce": "LeadBridge_Key__c",
                    "dataverse": "lb_leadkey",
                    "webhook": "lead_key",
                }[target["kind"]]
                found = [r[field] for r in records]
                assert len(found) == len(set(found)) == len(keys), target["kind"]
                assert set(found) == keys
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
            health = dict(
                conn.execute(
                    "SELECT name, value FROM cursors WHERE name LIKE 'target:%:health'"
                ).fetchall()
            )
        assert all(json.loads(v)["state"] == "ok" for v in health.values())
    finally:
        stop_sandboxes(sandbox_proc)
