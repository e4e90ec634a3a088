"""`leadbridge leads quarantine` and `status` show raw leads without a usable email."""

from __future__ import annotations

import json
from pathlib import Path

from tests.clihelp import EXIT_ATTENTION, run_cli


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
