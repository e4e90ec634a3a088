"""Kill the ingest process with SIGKILL mid-run, run it again: every raw lead exactly once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leadbridge.core.app.synthetic import write_jsonl

COUNT = 20_000


def _counts(db: Path) -> tuple[int, int, int]:
    with sqlite3.connect(db, timeout=30) as conn:
        raws = conn.execute("SELECT count(*), count(DISTINCT source_key) FROM raw_leads").fetchone()
        pending = conn.execute("SELECT count(*) FROM raw_leads WHERE status = 'new'").fetchone()
    return raws[0], raws[1], pending[0]


@pytest.mark.slow
def test_sigkill_mid_ingest_then_rerun_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    leads_file = tmp_path / "leads.jsonl"
    unique_leads = write_jsonl(leads_file, COUNT)
    db = tmp_path / "lb.db"
    config = tmp_path / "lb.yaml"
    config.write_text(
        f"store: sqlite:///{db}\nbatch_size: 200\nsources:\n  - name: f\n"
        f"    kind: leads_file\n    path: {leads_file}\n",
        encoding="utf-8",
    )
    command = [sys.executable, "-m", "leadbridge.core", "--config", str(config), "ingest"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if db.exists():
            try:
                landed = _counts(db)[0]
            except sqlite3.OperationalError:
                continue  # tables not created yet
            if landed >= 2_000:
                break
    proc.send_signal(signal.SIGKILL)
    code = proc.wait(timeout=30)
    assert code == -signal.SIGKILL, f"ingest exited {code} before it was killed"
    landed_at_kill = _counts(db)[0]
    assert 0 < landed_at_kill < COUNT, "the kill must land mid-run for this test to mean anything"

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]

    total, distinct, pending = _counts(db)
    assert (total, distinct, pending) == (COUNT, COUNT, 0)
    with sqlite3.connect(db) as conn:
        leads = conn.execute("SELECT count(*) FROM leads").fetchone()[0]
        actions = conn.execute("SELECT count(*) FROM events WHERE kind = 'action'").fetchone()[0]
    assert leads == unique_leads
    assert actions == COUNT  # one action event per raw lead: none lost, none applied twice
