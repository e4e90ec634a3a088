"""Stage sync scenarios end to end against the sandboxes of every CRM (issue: Lead Stage both
ways): a salesperson's SQL reaches everyone, a non-owner's backward move is refused and
re-asserted, the owner's recycle goes everywhere (HubSpot by clear-then-set), conflicts in
one window resolve by the rules, and a quiet cycle costs one call per CRM and writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from leadbridge.core.app import views
from leadbridge.core.connector import build, sandboxes
from leadbridge.core.delivery.deliver import deliver
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import load_settings
from leadbridge.core.store.repo import Store
from leadbridge.core.sync.stagesync import SyncReport, pull_stages

CONFIG = Path(__file__).resolve().parents[3] / "config"


class World:
    def __init__(self, tmp: Path) -> None:
        self.crm = sandboxes.start(["salesforce", "hubspot", "dataverse", "webhook"])
        entries = [sandboxes.target_entry(k, s) for k, s in self.crm.items()]
        self.settings = load_settings(
            None,
            store=f"sqlite:///{tmp / 'lb.db'}",
            targets=entries,
            sources=[
                {"name": "f", "kind": "leads_file", "path": str(CONFIG / "sample-leads.jsonl")}
            ],
        )
        self.store = Store(self.settings.store)
        self.targets = [
            build(c, placeholder=self.settings.placeholder) for c in self.settings.target_configs()
        ]
        pipeline.ingest(build(self.settings.source("f")), self.store, self.settings)
        self.deliver()
        with self.store.connect() as conn:
            lead = next(lead for lead in views.find_leads(conn, "priya.raman@northwindtraders.com"))
        self.key, self.email = lead.lead_key, lead.email

    def deliver(self) -> dict[str, int]:
        return {t.name: deliver(t, self.store, self.settings).pushed for t in self.targets}

    def sync(self) -> SyncReport:
        report = pull_stages(self.targets, self.store, self.settings)
        self.deliver()
        return report

    def admin(self, kind: str, action: str, body: dict[str, Any]) -> None:
        box = self.crm[kind]
        verify = str(box.ca_file) if kind == "dataverse" else True
        requests.post(
            f"{box.url}/_sandbox/{action}", json=body, timeout=5, verify=verify
        ).raise_for_status()

    def stages(self) -> dict[str, Any]:
        return {
            "leadbridge": self.lead()["stage"],
            "sales": self.crm["salesforce"].records[self.key]["Lead_Stage__c"],
            "marketing": self.crm["hubspot"].records[self.email]["lifecyclestage"],
            "d365": self.crm["dataverse"].records[self.key]["lb_leadstage"],
            "hook": self.crm["webhook"].records[self.key]["stage"],
        }

    def lead(self) -> dict[str, Any]:
        with self.store.connect() as conn:
            return views.lead_story(conn, views.find_leads(conn, self.key)[0])["lead"]

    def history(self) -> list[dict[str, Any]]:
        with self.store.connect() as conn:
            return views.lead_story(conn, views.find_leads(conn, self.key)[0])["history"]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    try:
        yield w
    finally:
        w.store.dispose()
        sandboxes.stop(w.crm)


def test_an_mql_reaches_every_crm_and_a_quiet_cycle_costs_one_call_each(world: World) -> None:
    assert world.stages() == {
        "leadbridge": "mql",
        "sales": "MQL",
        "marketing": "marketingqualifiedlead",
        "d365": 100000002,
        "hook": "mql",
    }
    report = world.sync()
    assert (report.applied, report.refused) == (0, 0)
    assert all(calls <= 1 for calls in report.api_calls.values()), report.api_calls
    assert "hook" not in report.read  # a push-only target is never read


def test_a_salesperson_accepts_the_mql_and_everyone_follows(world: World) -> None:
    world.admin("salesforce", "stage", {"key": world.key, "value": "SQL"})
    report = world.sync()
    assert report.applied == 1
    assert world.stages() == {
        "leadbridge": "sql",
        "sales": "SQL",
        "marketing": "salesqualifiedlead",
        "d365": 100000003,
        "hook": "sql",
    }
    [event] = [e for e in world.history() if e["kind"] == "stage" and e["actor"] == "sales"]
    assert event["data"]["from"] == "mql" and event["data"]["to"] == "sql"
    assert "forward move by sales" in event["data"]["reason"]

    again = world.sync()  # right after: no echo loop, nothing written anywhere
    assert (again.applied, again.refused) == (0, 0)
    assert world.deliver() == {t.name: 0 for t in world.targets}


def test_a_hubspot_user_moving_it_back_is_refused_and_corrected(world: World) -> None:
    world.admin("salesforce", "stage", {"key": world.key, "value": "SQL"})
    world.sync()
    world.admin(
        "hubspot", "stage", {"email": world.email, "properties": {"lifecyclestage": "lead"}}
    )
    report = world.sync()
    assert (report.applied, report.refused) == (0, 1)
    assert world.stages()["leadbridge"] == "sql"
    assert world.stages()["marketing"] == "salesqualifiedlead"  # re-asserted
    refused = [e for e in world.history() if e["kind"] == "stage_refused"]
    assert refused[-1]["actor"] == "marketing" and "owns neither" in refused[-1]["data"]["reason"]


def test_the_owner_recycling_moves_it_back_everywhere_hubspot_by_clear_then_set(
    world: World,
) -> None:
    world.admin("salesforce", "stage", {"key": world.key, "value": "SQL"})
    world.sync()
    hubspot_before = world.crm["hubspot"].api_calls()
    world.admin("salesforce", "stage", {"key": world.key, "value": "Nurture"})
    report = world.sync()
    assert report.applied == 1
    assert world.stages() == {
        "leadbridge": "lead",
        "sales": "Nurture",
        "marketing": "lead",
        "d365": 100000001,
        "hook": "lead",
    }
    hubspot_writes = [
        r
        for r in world.crm["hubspot"].request_log[hubspot_before:]
        if r["path"].endswith("/batch/upsert")
    ]
    assert len(hubspot_writes) == 2  # clear, then set: two separate requests


def test_two_crms_in_one_window_the_owner_wins(world: World) -> None:
    # HubSpot (marketing) pushes it forward to SQL while Salesforce (sales, the owner of
    # disqualified) disqualifies it, in the same window.
    world.admin(
        "hubspot",
        "stage",
        {"email": world.email, "properties": {"lifecyclestage": "salesqualifiedlead"}},
    )
    world.admin("salesforce", "stage", {"key": world.key, "value": "Disqualified"})
    report = world.sync()
    assert (report.applied, report.refused) == (1, 1)
    stages = world.stages()
    assert stages["leadbridge"] == "disqualified" and stages["d365"] == 100000006
    hubspot = world.crm["hubspot"].records[world.email]
    assert hubspot["hs_lead_status"] == "UNQUALIFIED"
    assert hubspot["leadbridge_stage"] == "disqualified"
    refused = [e for e in world.history() if e["kind"] == "stage_refused"]
    assert refused[-1]["actor"] == "marketing"


def test_a_converted_salesforce_lead_reads_as_sql_and_is_no_longer_written(world: World) -> None:
    world.admin("salesforce", "convert", {"key": world.key})
    report = world.sync()
    assert report.applied == 1 and world.stages()["leadbridge"] == "sql"


def test_sql_in_salesforce_marks_the_partner_center_referral_active_accepted(
    tmp_path: Path,
) -> None:
    from leadbridge.connectors.marketplace.referrals import DelegatedToken
    from leadbridge.connectors.marketplace.sandbox import ReferralsSandbox

    crm = sandboxes.start(["salesforce"])
    with ReferralsSandbox() as pc:
        try:
            referral = pc.add(
                {
                    "name": "Contoso CRM Add-in",
                    "customerProfile": {
                        "name": "Northwind",
                        "team": [{"lastName": "Raman", "email": "priya@northwind.example"}],
                    },
                }
            )
            settings = load_settings(
                None,
                store=f"sqlite:///{tmp_path / 'lb.db'}",
                targets=[sandboxes.target_entry("salesforce", crm["salesforce"])],
                sources=[
                    {
                        "name": "referrals",
                        "kind": "partner_center_referrals",
                        "client_id": pc.client_id,
                        "authority": pc.authority,
                        "api_url": pc.api_url,
                        "ca_bundle": str(pc.ca_file),
                        "token_cache": str(tmp_path / "pc-cache.json"),
                    }
                ],
            )
            DelegatedToken(settings.source("referrals")).sign_in(lambda message: None)
            store = Store(settings.store)
            pipeline.ingest(build(settings.source("referrals")), store, settings)
            targets = [
                build(c, placeholder=settings.placeholder) for c in settings.target_configs()
            ]
            assert [t.name for t in targets] == ["sales", "referrals"]
            for target in targets:
                deliver(target, store, settings)
            [key] = crm["salesforce"].records
            requests.post(
                f"{crm['salesforce'].url}/_sandbox/stage",
                json={"key": key, "value": "SQL"},
                timeout=5,
            )

            assert pull_stages(targets, store, settings).applied == 1
            for target in targets:
                deliver(target, store, settings)
            stored = pc.records[referral["id"]]
            assert (stored["status"], stored["substatus"]) == ("Active", "Accepted")
            assert stored["externalReferenceId"] == key
            store.dispose()
        finally:
            sandboxes.stop(crm)


def test_a_pause_a_vendor_gave_another_process_holds_a_one_off_stage_read(world: World) -> None:
    """`leadbridge sync-stages` in a new process: the pause the daemon was given (in the
    store) holds the read of that CRM — no call — and the others are read as usual."""
    from datetime import timedelta

    from leadbridge.core.delivery.pauses import Pause, record_pause
    from leadbridge.core.store.repo import utcnow

    now = utcnow()
    with world.store.begin() as conn:
        record_pause(
            conn, Pause("sales", now + timedelta(minutes=5), "REQUEST_LIMIT_EXCEEDED"), now
        )
    fresh = [
        build(c, placeholder=world.settings.placeholder) for c in world.settings.target_configs()
    ]
    report = pull_stages(fresh, world.store, world.settings)
    assert "sales" not in report.read and report.api_calls.get("sales", 0) == 0
    assert "REQUEST_LIMIT_EXCEEDED" in report.paused["sales"]
    assert not report.errors and report.read  # the other CRMs were read
