"""Ingest end to end on SQLite: dedupe, merge, quarantine, test leads, crash safety, outbox."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from leadbridge.connectors.marketplace.file import LeadsFileConfig, LeadsFileSource
from leadbridge.core.app import views
from leadbridge.core.domain import identity
from leadbridge.core.domain.models import RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import ConnectorEntry, Settings
from leadbridge.core.store import repo, state
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import cursors, events, leads, outbox, quarantine, raw_leads


def _file(tmp_path: Path, payloads: list[Any], name: str = "leads.jsonl") -> LeadsFileSource:
    path = tmp_path / name
    path.write_text(
        "".join((p if isinstance(p, str) else json.dumps(p)) + "\n" for p in payloads),
        encoding="utf-8",
    )
    return LeadsFileSource(LeadsFileConfig(name="file", path=path))


def _count(store: Store, table: Any, *where: Any) -> int:
    with store.connect() as conn:
        stmt = select(func.count()).select_from(table)
        for clause in where:
            stmt = stmt.where(clause)
        return conn.execute(stmt).scalar_one()


def _https(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s["https_payload"] for s in samples]


def test_samples_become_deduplicated_qualified_leads(
    tmp_path: Path, store: Store, settings: Settings, samples: list[dict[str, Any]]
) -> None:
    report = pipeline.ingest(_file(tmp_path, _https(samples)), store, settings)
    assert (report.fetched, report.processed, report.test_leads, report.quarantined) == (
        12,
        12,
        1,
        0,
    )
    # 12 raw leads: one test lead, and ml-11 is ml-01 coming back → 10 leads
    assert _count(store, leads) == 10
    with store.connect() as conn:
        smith = [
            lead
            for lead in repo.load_leads(
                conn,
                [
                    r.lead_key
                    for r in conn.execute(
                        select(leads.c.lead_key).where(leads.c.email == "jsmith@contoso.com")
                    )
                ],
            ).values()
        ]
    assert len(smith) == 1
    john = smith[0]
    assert john.actions == ["INS", "Create"] and john.raw_count == 2
    assert (john.first_name, john.last_name, john.offer_key) == (
        "John",
        "Smith",
        "contoso.contoso-analytics",
    )
    assert john.stage == "mql" and "repeat engagement x1 (+10)" in john.score_rules
    assert _count(store, leads, leads.c.stage == "mql") == report.new_mqls


def test_ingesting_the_same_file_twice_adds_nothing(
    tmp_path: Path, store: Store, settings: Settings, samples: list[dict[str, Any]]
) -> None:
    source = _file(tmp_path, _https(samples))
    pipeline.ingest(source, store, settings)
    before = (_count(store, raw_leads), _count(store, leads), _count(store, events))
    with store.begin() as conn:  # forget the cursor: a full re-read must still be a no-op
        conn.execute(cursors.delete())
    again = pipeline.ingest(source, store, settings)
    assert again.processed == 0
    assert (_count(store, raw_leads), _count(store, leads), _count(store, events)) == before


def test_a_malformed_record_is_quarantined_and_the_rest_goes_on(
    tmp_path: Path, store: Store, settings: Settings, samples: list[dict[str, Any]]
) -> None:
    payloads = [
        samples[0]["https_payload"],
        "{not json",
        {"UserDetails": {"Email": "x@y.io"}},
        samples[2]["https_payload"],
    ]
    report = pipeline.ingest(_file(tmp_path, payloads), store, settings)
    assert report.quarantined == 2 and report.needs_attention
    assert _count(store, raw_leads) == 4  # nothing lost: every record stays in landing
    assert _count(store, leads) == 2
    with store.connect() as conn:
        fields = {row.field for row in conn.execute(select(quarantine.c.field))}
    assert fields == {"body", "LeadSource"}


def test_test_leads_are_quarantined_and_remembered_unless_configured(
    tmp_path: Path, store: Store, settings: Settings, samples: list[dict[str, Any]]
) -> None:
    test_lead = next(s for s in samples if s["sample_id"] == "ml-08")["https_payload"]
    pipeline.ingest(_file(tmp_path, [test_lead]), store, settings)
    assert _count(store, leads) == 0
    assert _count(store, quarantine, quarantine.c.reason == "test") == 1
    with store.connect() as conn:
        assert state.get(conn, state.LAST_TEST_LEAD) is not None

    delivering = settings.model_copy(update={"test_leads": "deliver"})
    pipeline.ingest(_file(tmp_path, [test_lead], "again.jsonl"), store, delivering)
    assert _count(store, leads) == 0  # same body, same source key: landed once, never again
    other = json.loads(json.dumps(test_lead))
    other["UserDetails"]["Phone"] = "555"
    source = LeadsFileSource(
        LeadsFileConfig(name="second", path=_file(tmp_path, [other], "b.jsonl").config.path)
    )
    pipeline.ingest(source, store, delivering)
    assert _count(store, leads) == 1


def test_a_raw_lead_without_a_valid_email_is_quarantined_and_never_delivered(
    tmp_path: Path, store: Store, settings: Settings
) -> None:
    """No email, no lead: nothing to merge into and nothing a CRM could hold."""
    no_email = {"LeadSource": "AzureMarketplace-INS|c.o", "UserDetails": {"FirstName": "Edu"}}
    not_an_email = {
        "LeadSource": "AzureMarketplace-INS|c.o",
        "UserDetails": {"FirstName": "Edu", "Email": "not-an-email"},
    }
    good = {"LeadSource": "AzureMarketplace-INS|c.o", "UserDetails": {"Email": "edu@contoso.com"}}
    delivering = settings.model_copy(
        update={"targets": [ConnectorEntry(name="crm", kind="webhook")]}
    )
    report = pipeline.ingest(
        _file(tmp_path, [no_email, not_an_email, no_email | {"ActionCode": "INS"}, good]),
        store,
        delivering,
    )
    assert (report.processed, report.leads_created, report.quarantined) == (4, 1, 3)
    assert report.needs_attention
    with store.connect() as conn:
        emails = [row.email for row in conn.execute(select(leads.c.email))]
        rows = views.list_quarantine(conn, "invalid_email")
        queued = list(conn.execute(select(outbox.c.lead_key, outbox.c.target)))
        statuses = repo.count_by(conn, raw_leads.c.status)
    assert emails == ["edu@contoso.com"]
    assert statuses == {"quarantined": 3, "processed": 1}  # every record stays in landing
    assert [(r["reason"], r["field"]) for r in rows] == [("invalid_email", "Email")] * 3
    assert "no email" in rows[0]["message"] and "not a valid" in rows[1]["message"]
    assert all("nothing to deliver" in r["message"] and "kept" in r["fix"] for r in rows)
    assert queued == [(identity.lead_key("edu@contoso.com", "c.o"), "crm")]


def test_a_crash_between_landing_and_processing_loses_nothing(
    tmp_path: Path, store: Store, settings: Settings, samples: list[dict[str, Any]]
) -> None:
    raws = [
        RawLead(source="hook", source_key=str(i), kind="https", payload=s["https_payload"])
        for i, s in enumerate(samples)
    ]
    for raw in raws:
        pipeline.land_one(store, raw)  # the webhook committed them, then the process died
    assert _count(store, leads) == 0
    report = pipeline.process_pending(store, settings)
    assert report.processed == 12 and _count(store, leads) == 10
    assert pipeline.process_pending(store, settings).processed == 0


def test_every_changed_lead_gets_one_coalesced_outbox_row_per_target(
    tmp_path: Path, store: Store, settings: Settings, samples: list[dict[str, Any]]
) -> None:
    with store.begin() as conn:
        repo.enqueue(conn, ["a" * 32], ["crm"], repo.utcnow())
        repo.enqueue(conn, ["a" * 32, "b" * 32], ["crm", "hook"], repo.utcnow())
    assert _count(store, outbox) == 4


def test_batches_commit_independently(tmp_path: Path, store: Store, settings: Settings) -> None:
    bodies = [
        {"LeadSource": "AzureMarketplace-INS|c.o", "UserDetails": {"Email": f"u{i}@contoso.com"}}
        for i in range(25)
    ]
    small = settings.model_copy(update={"batch_size": 10})
    logged: list[int] = []
    pipeline.ingest(
        _file(tmp_path, bodies), store, small, on_batch=lambda r: logged.append(r.fetched)
    )
    assert logged == [10, 20, 25]
    assert _count(store, leads) == 25


def test_processing_up_to_through_stops_at_it_without_a_second_read(
    store: Store, settings: Settings, monkeypatch: Any
) -> None:
    """A full batch that reached `through` took every row asked for: the loop ends there,
    without a write-locked transaction that would find nothing."""
    small = settings.model_copy(update={"batch_size": 10})
    body = {"LeadSource": "AzureMarketplace-INS|c.o", "UserDetails": {"Email": "a@contoso.com"}}
    with store.begin() as conn:
        raws = [
            RawLead(source="s", source_key=str(i), kind="https", payload=body) for i in range(12)
        ]
        repo.land(conn, raws, repo.utcnow())
        ids = sorted(conn.execute(select(raw_leads.c.id)).scalars())
    reads: list[int] = []
    pending = repo.pending_raw_leads

    def counted(conn: Any, limit: int, through: int | None = None) -> list[Any]:
        rows = pending(conn, limit, through)
        reads.append(len(rows))
        return rows

    monkeypatch.setattr(repo, "pending_raw_leads", counted)
    assert pipeline.process_pending(store, small, through=ids[9]).processed == 10
    assert reads == [10]
    assert pipeline.process_pending(store, small).processed == 2  # the rest, untouched
    assert reads == [10, 2]
