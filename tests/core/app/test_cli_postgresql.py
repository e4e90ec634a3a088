"""The operator's commands on a PostgreSQL store, end to end: most CLI tests use SQLite,
and `leads reprocess` once failed on every PostgreSQL store with SQL only SQLite takes.
Each command's exit code is asserted (tests/clihelp.run_cli)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from leadbridge.core.app import views
from leadbridge.core.settings import load_settings
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store
from tests.clihelp import EXIT_ATTENTION, run_cli
from tests.core.app.listing import check_listed_in_full, save_many_leads

OFFER = "AzureMarketplace-INS|contoso.crm"
PEOPLE = ["ana@contoso.com", "bo@fabrikam.com", "cy@adatum.com"]


def _config(tmp_path: Path, pg_url: str) -> Path:
    leads = tmp_path / "leads.jsonl"
    bodies = [{"LeadSource": OFFER, "UserDetails": {"Email": email}} for email in PEOPLE]
    bodies.append({"LeadSource": OFFER, "UserDetails": {"Email": "not-an-email"}})
    leads.write_text("".join(json.dumps(b) + "\n" for b in bodies), encoding="utf-8")
    config = tmp_path / "lb.yaml"
    config.write_text(
        f"store: {pg_url}\nlog_format: text\n"
        "privacy:\n  suppression_key: a-long-random-secret-for-this-test-only\n"
        f"sources:\n  - name: capture\n    kind: leads_file\n    path: {leads}\n",
        encoding="utf-8",
    )
    return config


def test_the_operators_commands_run_on_a_postgresql_store(tmp_path: Path, pg_url: str) -> None:
    config = _config(tmp_path, pg_url)
    lb = ["--config", config]
    assert "1 quarantined" in run_cli([*lb, "ingest"], expect=EXIT_ATTENTION).output
    status = json.loads(run_cli([*lb, "status", "--format", "json"]).stdout)
    assert status["quarantine"] == {"invalid_email": 1}
    assert len(json.loads(run_cli([*lb, "leads", "list", "--format", "json"]).stdout)) == 3
    listed = run_cli([*lb, "leads", "list", "--format", "csv"]).stdout
    assert len(list(csv.DictReader(io.StringIO(listed)))) == 3
    run_cli([*lb, "leads", "show", PEOPLE[0]])
    run_cli([*lb, "leads", "quarantine"])
    again = run_cli([*lb, "leads", "reprocess", "--reason", "invalid_email"], expect=EXIT_ATTENTION)
    assert "1 quarantined raw lead(s) processed again" in again.output  # and quarantined again
    exported = json.loads(run_cli([*lb, "leads", "export", PEOPLE[1]]).stdout)
    assert exported["leads"]
    run_cli([*lb, "report", "funnel"])
    run_cli([*lb, "rescore"])
    run_cli([*lb, "db", "prune"])
    run_cli([*lb, "backfill", "--dry-run"])

    store = Store(load_settings(config).store)
    try:
        with store.begin() as conn:  # a CRM that refused two leads for good
            keys = sorted(repo.lead_keys_active_between(conn, None, None))[:2]
            letter = {"target": "crm", "error_class": "permanent", "error": "400"}
            now = repo.utcnow()
            repo.add_dead_letters(
                conn, [{**letter, "lead_key": k, "created_at": now} for k in keys]
            )
            first, second = repo.open_dead_letter_ids(conn)
    finally:
        store.dispose()
    run_cli([*lb, "dlq", "list"])
    run_cli([*lb, "dlq", "show", str(first)])
    run_cli([*lb, "dlq", "discard", str(first)])
    run_cli([*lb, "dlq", "replay", str(second)])
    run_cli([*lb, "leads", "forget", PEOPLE[2], "--yes"])
    after = json.loads(run_cli([*lb, "leads", "list", "--format", "json"]).stdout)
    assert len(after) == 2


def test_leads_list_reads_through_a_server_side_cursor(
    tmp_path: Path, pg_url: str, pg_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg's default cursor fetches the whole result at once: `leads list --format csv`
    over a million leads would hold them all. The listing declares a cursor in PostgreSQL
    and fetches from it a page at a time."""
    keys = save_many_leads(pg_store)
    with pg_store.connect() as conn:
        listing = views.iter_leads(conn)
        first = next(listing)
        declared = conn.exec_driver_sql("SELECT count(*) FROM pg_cursors").scalar_one()
        listing.close()
        assert conn.exec_driver_sql("SELECT count(*) FROM pg_cursors").scalar_one() == 0
    assert first["lead_key"] == keys[0] and declared == 1
    check_listed_in_full(["--config", _config(tmp_path, pg_url)], keys, monkeypatch)
