"""The CLI through typer's runner: exit codes, formats, and what operators read."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from leadbridge.core.cli import app
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store

runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path, samples: list[dict[str, Any]]) -> Path:
    leads = tmp_path / "leads.jsonl"
    lines = [json.dumps(s["https_payload"]) for s in samples] + ["{broken"]
    leads.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = tmp_path / "lb.yaml"
    path.write_text(
        f"store: sqlite:///{tmp_path / 'lb.db'}\nlog_format: text\n"
        f"sources:\n  - name: capture\n    kind: leads_file\n    path: {leads}\n",
        encoding="utf-8",
    )
    return path


def run(config: Path, *args: str) -> Any:
    return runner.invoke(app, ["--config", str(config), *args])


def test_ingest_then_list_show_and_status(config: Path) -> None:
    result = run(config, "ingest")
    assert result.exit_code == 1, result.output  # finished, but a record was quarantined
    assert "1 quarantined" in result.output

    listed = json.loads(run(config, "leads", "list", "--format", "json").stdout)
    assert len(listed) == 10
    assert {row["stage"] for row in listed} == {"lead", "mql"}
    assert set(listed[0]) >= {"lead_key", "email", "offer_key", "stage", "score", "actions"}

    mqls = json.loads(run(config, "leads", "list", "--stage", "mql", "--format", "json").stdout)
    assert all(row["stage"] == "mql" for row in mqls) and mqls

    csv_out = run(config, "leads", "list", "--format", "csv").stdout
    assert csv_out.splitlines()[0].startswith("lead_key,email")

    story = json.loads(
        run(config, "leads", "show", "JSmith@contoso.com", "--format", "json").stdout
    )
    kinds = [event["kind"] for event in story["history"]]
    assert kinds.count("action") == 2 and "stage" in kinds
    assert story["lead"]["score_rules"]

    table = run(config, "leads", "show", story["lead"]["lead_key"])
    assert table.exit_code == 0 and "history" in table.output

    status = json.loads(run(config, "status", "--format", "json").stdout)
    assert status["raw_leads"] == {"processed": 11, "quarantined": 2}
    assert status["quarantine"] == {"malformed": 1, "test": 1}
    assert status["last_test_lead_at"]
    assert status["sources"]["capture"]["raw_leads"] == 13


def test_quarantine_is_explained(config: Path) -> None:
    run(config, "ingest")
    rows = json.loads(
        run(config, "leads", "quarantine", "--reason", "malformed", "--format", "json").stdout
    )
    assert len(rows) == 1 and rows[0]["field"] == "body"
    story = json.loads(
        run(config, "leads", "show", f"raw:{rows[0]['raw_lead_id']}", "--format", "json").stdout
    )
    assert story["quarantine"]["fix"]
    assert run(config, "leads", "show", "raw:x").exit_code == 2
    assert run(config, "leads", "show", "nobody@nowhere.io").exit_code == 1


# What a customer (or a CRM) can type: OSC title change, clear screen, BEL, an 8-bit CSI,
# a bidi override, and spreadsheet formulas.
HOSTILE = {
    "first_name": "\x1b]0;pwned\x07Eve\x1b[2J",
    "last_name": "\u202eevE\x9b31m\x7f",
    "company": '=HYPERLINK("http://evil.example","click")',
    "title": "@SUM(1+1)",
    "offer_title": "-2+3",
    "notes": "+cmd|' /C calc'!A0",
}
RAW = ("\x1b]0;", "\x1b[2J", "\x07", "\x9b", "\x7f", "\u202e")


def test_hostile_lead_fields_reach_neither_the_terminal_nor_a_spreadsheet(config: Path) -> None:
    assert run(config, "ingest").exit_code == 1
    store = Store(f"sqlite:///{config.parent / 'lb.db'}")
    with store.begin() as conn:
        lead = repo.leads_by_email(conn, ["jsmith@contoso.com"])["jsmith@contoso.com"][0]
        key = lead.lead_key
        repo.save_leads(conn, [dataclasses.replace(lead, **HOSTILE)], repo.utcnow())
        repo.add_dead_letters(
            conn,
            [
                {
                    "lead_key": key,
                    "target": "sales",
                    "error_class": "permanent",
                    "error": "=1+2\x1b[2J",
                    "body": None,
                    "created_at": repo.utcnow(),
                }
            ],
        )

    for args in (["leads", "list"], ["leads", "show", key], ["dlq", "list"]):
        result = run(config, *args)
        assert result.exit_code == 0, result.output
        assert not [c for c in RAW if c in result.output], args
    shown = run(config, "leads", "show", key).output
    assert "\\x1b]0;pwned\\x07Eve\\x1b[2J" in shown  # visible, not acted on
    assert "\\u202eevE\\x9b31m\\x7f" in shown

    listed = run(config, "leads", "list", "--format", "json")
    assert listed.exit_code == 0 and not [c for c in RAW if c in listed.stdout]
    [row] = [r for r in json.loads(listed.stdout) if r["lead_key"] == key]
    assert {k: row[k] for k in ("first_name", "last_name", "company")} == {
        k: HOSTILE[k] for k in ("first_name", "last_name", "company")
    }  # JSON escapes them and gives them back exactly

    exported = run(config, "leads", "list", "--format", "csv")
    assert exported.exit_code == 0 and not [c for c in RAW if c in exported.stdout]
    [cells] = [r for r in csv.DictReader(io.StringIO(exported.stdout)) if r["lead_key"] == key]
    assert cells["company"] == "'" + HOSTILE["company"]
    assert cells["title"] == "'@SUM(1+1)" and cells["offer_title"] == "'-2+3"
    assert cells["first_name"] == "\\x1b]0;pwned\\x07Eve\\x1b[2J"
    assert cells["score"] == str(lead.score)  # leadbridge's own numbers stay numbers

    letters = run(config, "dlq", "list", "--format", "csv")
    assert letters.exit_code == 0
    [letter] = list(csv.DictReader(io.StringIO(letters.stdout)))
    assert letter["error"] == "'=1+2\\x1b[2J"


def test_config_check_lists_problems_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "engine: swarm\nsources:\n  - name: t\n    kind: marketplace_table\n", encoding="utf-8"
    )
    result = runner.invoke(app, ["--config", str(bad), "config", "check"])
    assert result.exit_code == 2
    assert "engine" in result.output and "sources[t].connection_string" in result.output
    assert "fix:" in result.output


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "store: postgresql://lb:pa55word@db/lb\nsources:\n  - name: t\n"
        "    kind: marketplace_table\n    connection_string: AccountKey=topsecret\n",
        encoding="utf-8",
    )
    assert runner.invoke(app, ["--config", str(path), "config", "check"]).exit_code == 0
    shown = runner.invoke(app, ["--config", str(path), "config", "show"]).stdout
    assert "topsecret" not in shown and "pa55word" not in shown
    assert json.loads(shown)["sources"][0]["table"] == "MarketplaceLeads"


def test_db_upgrade_and_usage_errors(config: Path) -> None:
    result = run(config, "db", "upgrade")
    assert result.exit_code == 0 and "revision" in result.output
    assert run(config, "ingest", "--source", "nope").exit_code == 2
    assert run(config, "leads", "list", "--format", "xml").exit_code == 2
    assert run(config, "--log-format", "yaml", "status").exit_code == 2


def test_demo_runs_without_credentials(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--workdir", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "12 unique leads" in result.output
    for crm in ("salesforce", "hubspot", "dataverse", "webhook"):
        assert f"{crm} sandbox now holds 12 records" in result.output
    assert "Delivering every lead again: 0 API calls" in result.output
    assert "HubSpot shows salesqualifiedlead" in result.output  # the stage sync step
    assert "mql → sql by sales" in result.output
