"""`leadbridge leads export EMAIL`: everything held on a person, as one JSON document."""

from __future__ import annotations

import json
from pathlib import Path

from tests.clihelp import EXIT_ATTENTION, EXIT_USAGE, run_cli
from tests.conftest import ROOT

SAMPLES = ROOT / "config" / "sample-leads.jsonl"
TEST_LEAD = "MSFT_TEST_638512758121234567@test.com"  # quarantined: Microsoft's test lead


def _ingested(tmp_path: Path) -> list[str | Path]:
    config = tmp_path / "lb.yaml"
    config.write_text(
        f"store: sqlite:///{tmp_path / 'lb.db'}\nlog_format: text\n"
        f"sources:\n  - name: samples\n    kind: leads_file\n    path: {SAMPLES}\n",
        encoding="utf-8",
    )
    lb: list[str | Path] = ["--config", config]
    run_cli([*lb, "ingest"], expect=EXIT_ATTENTION)  # line 13 is malformed
    return lb


def test_a_person_gets_every_lead_with_its_history_records_and_raw_payloads(
    tmp_path: Path,
) -> None:
    lb = _ingested(tmp_path)
    listed = json.loads(run_cli([*lb, "leads", "list", "--format", "json"]).stdout)
    email = max(
        {lead["email"] for lead in listed}, key=lambda e: sum(lead["email"] == e for lead in listed)
    )  # the person with the most leads
    exported = json.loads(run_cli([*lb, "leads", "export", email.upper()]).stdout)
    assert exported["email"] == email
    mine = [lead for lead in listed if lead["email"] == email]
    assert sorted(e["lead"]["lead_key"] for e in exported["leads"]) == sorted(
        lead["lead_key"] for lead in mine
    )
    for held in exported["leads"]:
        assert held["lead"]["email"] == email
        assert any(event["kind"] == "action" for event in held["history"])
        assert held["raw_leads"] and all(raw["payload"] for raw in held["raw_leads"])
        assert email in json.dumps(held["raw_leads"]).lower()  # the payloads as landed
        assert held["delivered_to"] == [] and held["dead_letters"] == []  # no target here


def test_a_quarantined_record_naming_the_address_is_part_of_it(tmp_path: Path) -> None:
    lb = _ingested(tmp_path)
    exported = json.loads(run_cli([*lb, "leads", "export", TEST_LEAD]).stdout)
    assert exported["leads"] == []
    [kept] = exported["quarantined_raw_leads"]
    assert kept["reason"] == "test" and kept["payload"]["UserDetails"]["Email"] == TEST_LEAD


def test_nothing_held_is_said_on_stderr_with_exit_1(tmp_path: Path) -> None:
    lb = _ingested(tmp_path)
    done = run_cli([*lb, "leads", "export", "nobody_%@nowhere.example"], expect=EXIT_ATTENTION)
    assert done.stdout == "" and "nothing is held" in done.stderr


def test_forget_then_export_holds_nothing_and_a_new_action_is_set_aside(tmp_path: Path) -> None:
    lb = _ingested(tmp_path)
    email = "jsmith@contoso.com"
    assert json.loads(run_cli([*lb, "leads", "export", email]).stdout)["leads"]
    needs_key = run_cli([*lb, "leads", "forget", email, "--yes"], expect=EXIT_USAGE)
    assert "privacy.suppression_key" in needs_key.output and "fix:" in needs_key.output

    keyed = {"LEADBRIDGE_PRIVACY__SUPPRESSION_KEY": "a-long-random-suppression-secret"}
    asked = run_cli([*lb, "leads", "forget", email], expect=EXIT_USAGE, env=keyed)
    assert "--yes" in asked.output  # not on a terminal: never erased without saying so
    done = run_cli([*lb, "leads", "forget", email, "--yes"], env=keyed)
    assert "removed from the store" in done.stdout and "suppression list" in done.stdout
    run_cli([*lb, "leads", "export", email], expect=EXIT_ATTENTION)

    again = tmp_path / "again.jsonl"
    body = {"LeadSource": "AppSource-INS|c.o", "UserDetails": {"Email": email.upper()}}
    again.write_text(json.dumps(body) + "\n", encoding="utf-8")
    config = tmp_path / "again.yaml"
    config.write_text(
        f"store: sqlite:///{tmp_path / 'lb.db'}\nlog_format: text\n"
        f"sources:\n  - name: again\n    kind: leads_file\n    path: {again}\n",
        encoding="utf-8",
    )
    ingested = run_cli(["--config", config, "ingest"], env=keyed)  # set aside: not a problem
    assert "1 of people who asked to be forgotten" in " ".join(ingested.stdout.split())
    run_cli(["--config", config, "leads", "export", email], expect=EXIT_ATTENTION)
