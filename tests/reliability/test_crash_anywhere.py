"""Crash anywhere: a backfill of synthetic leads into the four CRM sandboxes (their own
process) and a stage sync, SIGKILLed at 20 points — while landing, in the middle of
processing, after claiming, between a CRM's confirmation and its recording, after
recording, while reading stages and before their commit — and restarted each time.
Afterwards every unique lead is in every CRM exactly once, nothing in landing is lost, the
store is consistent, and the stage a salesperson set has reached every CRM.
LEADBRIDGE_RELIABILITY=full runs 5,000 leads."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
import requests

from leadbridge.core.app.synthetic import write_jsonl

from ..e2e.helpers import LEADBRIDGE, env, sandbox_records, start_sandboxes, write_config

LEADS = 5_000 if os.environ.get("LEADBRIDGE_RELIABILITY") == "full" else 600
# (crash point, the how-many-th pass). Ordered so each kill still has work to land on:
# processing only happens until the file is fully landed; delivery batches run out as runs
# deliver them, so the later the kill, the smaller its pass number; a finished backfill
# re-reads (and dedupes) the whole file on every run, so landing kills fit anywhere.
KILLS = [
    ("process.before_commit", 3),
    ("ingest.after_land", 2),
    ("process.before_commit", 1),
    ("delivery.after_upsert", 17),
    ("delivery.after_claim", 11),
    ("ingest.after_land", 4),
    ("delivery.after_record", 12),
    ("delivery.after_upsert", 13),
    ("delivery.after_upsert", 9),
    ("ingest.after_land", 1),
    ("delivery.after_record", 6),
    ("delivery.after_claim", 4),
    ("delivery.after_upsert", 5),
    ("delivery.after_upsert", 2),
    ("delivery.after_record", 2),
    ("delivery.after_upsert", 1),
]
STAGE_KILLS = [
    ("stagesync.after_read", 1),
    ("stagesync.before_commit", 1),
    ("delivery.after_upsert", 1),
    ("stagesync.before_commit", 1),
]
KEY_FIELD = {
    "salesforce": "LeadBridge_Key__c",
    "hubspot": "leadbridge_lead_key",
    "dataverse": "lb_leadkey",
    "webhook": "lead_key",
}


def _run(config: Path, *args: str, crash: str | None = None) -> int:
    environment = env() | ({"LEADBRIDGE_CRASH_AT": crash} if crash else {})
    return subprocess.run(
        [*LEADBRIDGE, "--config", str(config), *args],
        env=environment,
        capture_output=True,
        timeout=600,
    ).returncode


@pytest.mark.slow
def test_sigkill_at_twenty_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    leads_file = tmp_path / "leads.jsonl"
    unique = write_jsonl(leads_file, LEADS)
    sandbox_proc, targets = start_sandboxes(tmp_path)
    try:
        for target in targets:
            target["batch_size"] = 10  # ~180 delivery batches to spread the kills over
        db = tmp_path / "lb.db"
        config = write_config(
            tmp_path,
            db,
            [
                {
                    "name": "f",
                    "kind": "leads_file",
                    "path": str(leads_file),
                }
            ],
            targets,
            batch_size=100,
            delivery={"claim_ttl": "0s"},
        )
        killed = 0
        for point, nth in KILLS:
            killed += _run(config, "backfill", crash=f"{point}:{nth}") == -9
        assert _run(config, "backfill") == 0
        assert killed == len(KILLS), f"only {killed} of {len(KILLS)} kills landed"

        # A salesperson accepts 25 leads in Salesforce; the sync is killed 4 times too.
        sales = next(t for t in targets if t["kind"] == "salesforce")
        accepted = [r["LeadBridge_Key__c"] for r in sandbox_records(sales)[:25]]
        for key in accepted:
            requests.post(
                f"{sales['instance_url']}/_sandbox/stage",
                json={"key": key, "value": "SQL"},
                timeout=5,
            ).raise_for_status()
        for point, nth in STAGE_KILLS:
            killed += _run(config, "sync-stages", crash=f"{point}:{nth}") == -9
        assert _run(config, "sync-stages") == 0
        assert killed == len(KILLS) + len(STAGE_KILLS)  # 20 in all

        for target in targets:  # every unique lead in every CRM, exactly once
            keys = [r[KEY_FIELD[target["kind"]]] for r in sandbox_records(target)]
            assert len(keys) == len(set(keys)), f"{target['kind']}: a duplicate"
            if target["kind"] == "hubspot":
                assert len(keys) == len({r["email"] for r in sandbox_records(target)})
            else:
                assert len(keys) == unique, target["kind"]
        with sqlite3.connect(db) as conn:
            one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
            assert one("SELECT count(*) FROM raw_leads") == LEADS  # nothing lost in landing
            assert one("SELECT count(DISTINCT source_key) FROM raw_leads") == LEADS
            assert one("SELECT count(*) FROM raw_leads WHERE status = 'new'") == 0
            assert one("SELECT count(*) FROM leads") == unique
            assert one("SELECT count(*) FROM events WHERE kind = 'action'") == LEADS
            assert one("SELECT count(*) FROM outbox") == 0
            assert one("SELECT count(*) FROM dead_letters") == 0
            assert one("SELECT count(*) FROM target_links") >= unique * 3
            assert one("SELECT count(*) FROM leads WHERE stage = 'sql'") >= len(accepted)
        hubspot = next(t for t in targets if t["kind"] == "hubspot")
        by_key = {r["leadbridge_lead_key"]: r for r in sandbox_records(hubspot)}
        assert all(
            by_key[k]["lifecyclestage"] == "salesqualifiedlead" for k in accepted if k in by_key
        )
    finally:
        sandbox_proc.terminate()
        sandbox_proc.wait(timeout=30)
