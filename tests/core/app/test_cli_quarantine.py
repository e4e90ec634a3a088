"""`leadbridge leads quarantine` and `status` show raw leads without a usable email."""

from __future__ import annotations

import json
from pathlib import Path

from tests.clihelp import EXIT_ATTENTION, EXIT_USAGE, run_cli


def test_leads_without_a_usable_email_are_listed_and_counted(tmp_path: Path) -> None:
    leads = tmp_path / "leads.jsonl"
    bodies = [
        {"LeadSource": "AzureMarketplace-INS|c.o", "UserDetails": {"Email": "ana@contoso.com"}},
        {"LeadSource": "AzureMarketplace-INS|c.o", "UserDetails": {"Email": "not-an-email"}},
    ]
    leads.write_text("".join(json.dumps(b) + "\n" for b in bodies), encoding="utf-8")
    config = tmp_path / "lb.yaml"
    config.write_text(
        f"store: sqlite:///{tmp_path / 'lb.db'}\nlog_format: text\n"
        f"sources:\n  - name: capture\n    kind: leads_file\n    path: {leads}\n",
        encoding="utf-8",
    )

    lb = ["--config", config]

    ingested = run_cli([*lb, "ingest"], expect=EXIT_ATTENTION)  # finished; one needs a look
    assert "1 quarantined" in ingested.output
    listed = run_cli([*lb, "leads", "quarantine", "--reason", "invalid_email", "--format", "json"])
    [row] = json.loads(listed.stdout)
    assert (row["reason"], row["field"], row["source"]) == ("invalid_email", "Email", "capture")
    assert "not a valid address" in row["message"]
    table = run_cli([*lb, "leads", "quarantine"])
    assert "1 quarantined raw leads" in table.output
    csv_out = run_cli([*lb, "leads", "quarantine", "--format", "csv"])
    assert ",invalid_email,Email," in csv_out.stdout
    status = run_cli([*lb, "status", "--format", "json"])
    assert json.loads(status.stdout)["quarantine"] == {"invalid_email": 1}


def test_test_leads_are_processed_again_once_the_config_delivers_them(tmp_path: Path) -> None:
    """A publisher who wants Microsoft's test lead in the CRM after all: `test_leads:
    deliver`, then `leads reprocess --reason test` makes a lead of the raw one kept."""
    leads = tmp_path / "leads.jsonl"
    test_lead = {
        "LeadSource": "AzureMarketplace-INS|c.o",
        "UserDetails": {"Email": "MSFT_TEST_1@test.com", "FirstName": "MSFT_TEST_1"},
    }
    leads.write_text(json.dumps(test_lead) + "\n", encoding="utf-8")
    config = tmp_path / "lb.yaml"
    base = (
        f"store: sqlite:///{tmp_path / 'lb.db'}\nlog_format: text\n"
        f"sources:\n  - name: capture\n    kind: leads_file\n    path: {leads}\n"
    )
    config.write_text(base, encoding="utf-8")
    lb = ["--config", config]
    run_cli([*lb, "ingest"])  # the test lead is quarantined: expected, not a problem
    [kept] = json.loads(run_cli([*lb, "leads", "quarantine", "--format", "json"]).stdout)
    assert kept["reason"] == "test"
    run_cli([*lb, "leads", "reprocess"], expect=EXIT_USAGE)  # which ones?
    again = run_cli([*lb, "leads", "reprocess", str(kept["raw_lead_id"])])  # still quarantined
    assert "1 quarantined raw lead(s) processed again" in again.output
    assert json.loads(run_cli([*lb, "leads", "list", "--format", "json"]).stdout) == []

    config.write_text(base + "test_leads: deliver\n", encoding="utf-8")
    run_cli([*lb, "leads", "reprocess", "--reason", "test"])
    [lead] = json.loads(run_cli([*lb, "leads", "list", "--format", "json"]).stdout)
    assert lead["email"] == "msft_test_1@test.com"
    assert json.loads(run_cli([*lb, "leads", "quarantine", "--format", "json"]).stdout) == []
    nothing = run_cli([*lb, "leads", "reprocess", "--reason", "test"], expect=EXIT_ATTENTION)
    assert "0 quarantined raw lead(s)" in nothing.output
