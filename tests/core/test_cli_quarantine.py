"""`leadbridge leads quarantine` and `status` show raw leads without a usable email."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from leadbridge.core.cli import app

runner = CliRunner()


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

    def run(*args: str):
        return runner.invoke(app, ["--config", str(config), *args])

    ingested = run("ingest")
    assert ingested.exit_code == 1, ingested.output  # finished; one record needs a look
    listed = run("leads", "quarantine", "--reason", "invalid_email", "--format", "json")
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert (row["reason"], row["field"], row["source"]) == ("invalid_email", "Email", "capture")
    assert "not a valid address" in row["message"]
    table = run("leads", "quarantine")
    assert table.exit_code == 0 and "1 quarantined raw leads" in table.output
    csv_out = run("leads", "quarantine", "--format", "csv")
    assert csv_out.exit_code == 0 and ",invalid_email,Email," in csv_out.stdout
    status = run("status", "--format", "json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["quarantine"] == {"invalid_email": 1}
