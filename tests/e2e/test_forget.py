"""`leadbridge leads forget EMAIL --yes` end to end, as processes against the sandboxes.

Sample leads are delivered to the Salesforce, HubSpot, Dataverse and webhook sandboxes; the
person is forgotten, with a SIGKILL right after the store forgot them and before any CRM was
asked (LEADBRIDGE_CRASH_AT=erasure.after_store); the rerun finishes it: every record the
plan marks deleted is gone from its sandbox, the others (a colleague) are untouched, the
webhook receiver got a `person.erased` event, `leads export` holds nothing, and the
person's next marketplace action is quarantined `erased`, never delivered."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from .helpers import (
    LEADBRIDGE,
    env,
    sandbox_records,
    sandbox_requests,
    start_sandboxes,
    stop_sandboxes,
    write_config,
)

ANN, BEN = "ann@contoso.com", "ben@contoso.com"
EMAIL_FIELD = {
    "salesforce": "Email",
    "hubspot": "email",
    "dataverse": "emailaddress1",
    "webhook": "email",
}


def _payload(first: str, email: str, offer: str) -> dict[str, Any]:
    """A marketplace HTTPS payload (reference/sample-leads.json, `https_payload`)."""
    return {
        "UserDetails": {
            "FirstName": first,
            "LastName": "Lee",
            "Email": email,
            "Phone": "",
            "Country": "US",
            "Company": "Contoso Ltd",
            "Title": "CTO",
        },
        "LeadSource": "AppSource (SPZA)",
        "ActionCode": "PLT",
        "OfferTitle": offer,
        "Description": "",
    }


def _holds(entry: dict[str, Any], email: str) -> bool:
    field = EMAIL_FIELD[entry["kind"]]
    return any(str(r.get(field, "")).lower() == email for r in sandbox_records(entry))


def _run(config: Path, *args: str, extra: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [*LEADBRIDGE, "--config", str(config), *args],
        env=env() | (extra or {}),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_forget_killed_after_the_store_then_rerun_erases_the_person_everywhere(
    tmp_path: Path,
) -> None:
    leads_file = tmp_path / "leads.jsonl"
    lines = [
        _payload("Ann", ANN, "Contoso Analytics"),
        _payload("Ann", ANN, "Contoso Backup"),
        _payload("Ben", BEN, "Contoso Analytics"),
    ]
    leads_file.write_text("\n".join(json.dumps(p) for p in lines) + "\n", encoding="utf-8")
    sandbox, targets = start_sandboxes(tmp_path)
    try:
        db = tmp_path / "lb.db"
        config = write_config(
            tmp_path,
            db,
            [{"name": "f", "kind": "leads_file", "path": str(leads_file)}],
            targets,
            privacy={"suppression_key": "an-e2e-suppression-secret-of-some-length"},
        )
        for step in ("ingest", "deliver"):
            done = _run(config, step)
            assert done.returncode == 0, done.stdout + done.stderr
        assert all(_holds(t, ANN) and _holds(t, BEN) for t in targets)

        killed = _run(
            config,
            "leads",
            "forget",
            ANN,
            "--yes",
            extra={"LEADBRIDGE_CRASH_AT": "erasure.after_store"},
        )
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
        with sqlite3.connect(db) as conn:
            assert not conn.execute("SELECT 1 FROM leads WHERE email = ?", (ANN,)).fetchall()
        assert all(_holds(t, ANN) for t in targets), "no CRM is asked before the kill"

        rerun = _run(config, "leads", "forget", ANN, "--yes")
        plan = _plan(db)
        kept = [e for entries in plan.values() for e in entries if e["state"] == "kept"]
        assert rerun.returncode == (1 if kept else 0), rerun.stdout + rerun.stderr
        assert {e["state"] for entries in plan.values() for e in entries} <= {"done", "kept"}
        for target in targets:
            assert _holds(target, BEN), f"{target['name']}: a colleague must stay"
            if target["kind"] != "dataverse":  # a lead per offer: its contact is checked below
                assert not _holds(target, ANN), f"{target['name']} still holds the person"
        _dataverse_matches_the_plan(targets, plan)
        [hook] = [t for t in targets if t["kind"] == "webhook"]
        told = [r for r in sandbox_requests(hook) if "person.erased" in r["body"]]
        assert len(told) == 1 and ANN not in told[0]["body"]

        export = _run(config, "leads", "export", ANN)
        assert export.returncode == 1, export.stdout + export.stderr
        with leads_file.open("a", encoding="utf-8") as out:
            out.write(json.dumps(_payload("Ann", ANN, "Contoso Cloud")) + "\n")
        _run(config, "ingest")
        with sqlite3.connect(db) as conn:
            reasons = [r for (r,) in conn.execute("SELECT reason FROM quarantine")]
            assert reasons == ["erased"]
            assert not conn.execute("SELECT 1 FROM leads WHERE email = ?", (ANN,)).fetchall()
    finally:
        stop_sandboxes(sandbox)


def _plan(db: Path) -> dict[str, list[dict[str, Any]]]:
    with sqlite3.connect(db) as conn:
        [(plan,)] = conn.execute("SELECT plan FROM erasures").fetchall()
    return dict(json.loads(plan))


def _dataverse_matches_the_plan(
    targets: list[dict[str, Any]], plan: dict[str, list[dict[str, Any]]]
) -> None:
    """Dataverse holds the person on the lead and on their contact: the leads are deleted;
    the contact is deleted when the plan says leadbridge created it, else kept and said so."""
    [d365] = [t for t in targets if t["kind"] == "dataverse"]
    records = sandbox_records(d365)
    assert not [r for r in records if str(r.get("emailaddress1", "")).lower() == ANN]
    states = {e["kind"]: e["state"] for e in plan[d365["name"]]}
    assert states["lead"] == "done"
    people = requests.get(
        f"{d365['environment_url'].rstrip('/')}/_sandbox/people",
        timeout=10,
        verify=d365["ca_bundle"],
    ).json()
    holds_contact = any(c.get("emailaddress1", "").lower() == ANN for c in people["contacts"])
    assert holds_contact == (states["contact"] == "kept")
