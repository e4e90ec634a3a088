"""Fit × engagement end to end (issue 24), against the sandbox of every CRM with a fake clock
(the rescore's explicit `now`): a trial today is an A1 MQL in every CRM; thirty quiet days
lower its grade, pushed once; after 45 days the unaccepted MQL is recycled by marketing and
every CRM shows it back in nurture. The CRMs' schema checks know the score fields, and
HubSpot's are created on request."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from leadbridge.core.connector import SchemaChecker, build, sandboxes
from leadbridge.core.delivery.deliver import deliver
from leadbridge.core.domain import identity
from leadbridge.core.domain.models import RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import load_settings
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.sync.rescore import rescore

EMAIL = "nadia.cto@fabrikam.com"
OFFER = "contoso.contoso-analytics"
DAY = timedelta(days=1)
SCORING = {
    "mql_when": ["A1", "A2", "B1"],
    "recycle_after": "45d",
    "engagement": {"half_life": "30d", "levels": {"1": 40, "2": 20, "3": 12}},
}


class World:
    def __init__(self, tmp: Path) -> None:
        self.crm = sandboxes.start()  # every installed CRM's sandbox
        self.settings = load_settings(
            None,
            store=f"sqlite:///{tmp / 'lb.db'}",
            targets=[sandboxes.target_entry(k, s) for k, s in self.crm.items()],
            qualification=SCORING,
        )
        self.store = Store(self.settings.store)
        self.targets = [
            build(c, placeholder=self.settings.placeholder) for c in self.settings.target_configs()
        ]
        self.key = identity.lead_key(EMAIL, OFFER)
        self.now = utcnow()

    def trial(self) -> None:
        """A trial taken now, as the Azure portal's HTTPS payload has it
        (learn.microsoft.com/partner-center/marketplace-offers/partner-center-portal/
        commercial-marketplace-lead-management-instructions-https)."""
        payload = {
            "UserDetails": {
                "FirstName": "Nadia",
                "LastName": "Haddad",
                "Email": EMAIL,
                "Company": "Fabrikam",
                "Title": "CTO",
                "Country": "US",
            },
            "LeadSource": f"AzurePortal-Create|{OFFER}",
            "ActionCode": "Create",
            "OfferTitle": "Contoso Analytics",
        }
        raw = RawLead(
            source="hook", source_key="1", kind="https", payload=payload, occurred_at=self.now
        )
        pipeline.land_one(self.store, raw)
        pipeline.process_pending(self.store, self.settings)

    def deliver(self) -> dict[str, int]:
        return {t.name: deliver(t, self.store, self.settings).pushed for t in self.targets}

    def held(self) -> dict[str, tuple[Any, ...]]:
        """(grade, fit, engagement, stage) as each CRM holds them."""
        sf = self.crm["salesforce"].records[self.key]
        hs = self.crm["hubspot"].records[EMAIL]
        dv = self.crm["dataverse"].records[self.key]
        hook = self.crm["webhook"].records[self.key]
        zoho = self.crm["zoho"].records[self.key]
        return {
            "salesforce": (
                sf["LeadBridge_Grade__c"],
                sf["LeadBridge_Fit__c"],
                sf["LeadBridge_Engagement__c"],
                sf["Lead_Stage__c"],
            ),
            "hubspot": (
                hs["leadbridge_grade"],
                hs["leadbridge_fit"],
                hs["leadbridge_engagement"],
                hs["lifecyclestage"],
            ),
            "dataverse": (dv["lb_grade"], dv["lb_fit"], dv["lb_engagement"], dv["lb_leadstage"]),
            "webhook": (hook["grade"], hook["fit"], hook["engagement"], hook["stage"]),
            "zoho": (
                zoho["LeadBridge_Grade"],
                zoho["LeadBridge_Fit"],
                zoho["LeadBridge_Engagement"],
                zoho["LeadBridge_Stage"],
            ),
        }

    def history(self) -> list[Any]:
        with self.store.connect() as conn:
            return list(repo.lead_history(conn, self.key))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    try:
        yield w
    finally:
        w.store.dispose()
        sandboxes.stop(w.crm)


def test_a_trial_fades_from_a1_and_is_recycled_everywhere(world: World) -> None:
    assert set(world.crm) >= {"salesforce", "hubspot", "dataverse", "webhook", "zoho"}
    world.trial()
    assert set(world.deliver().values()) == {1}
    mql = {
        "salesforce": "MQL",
        "hubspot": "marketingqualifiedlead",
        "dataverse": 100000002,
        "webhook": "mql",
        "zoho": "MQL",
    }
    assert world.held() == {crm: ("A1", 20, 40, stage) for crm, stage in mql.items()}

    # Thirty simulated days of nothing: 30 points halve, the recency bonus is gone.
    report = rescore(world.store, world.settings, now=world.now + 30 * DAY)
    assert report.grades == {world.key: "A1→A3"}
    assert set(world.deliver().values()) == {1}  # the new grade, once per CRM
    assert {crm: held[:3] for crm, held in world.held().items()} == dict.fromkeys(
        mql, ("A3", 20, 15)
    )
    assert rescore(world.store, world.settings, now=world.now + 31 * DAY).queued == 0
    assert set(world.deliver().values()) == {0}  # a quiet day costs no call

    # Day 46: level 4, an MQL for 46 days that sales never accepted → nurture, everywhere.
    report = rescore(world.store, world.settings, now=world.now + 46 * DAY)
    assert (report.recycled, report.grades) == (1, {world.key: "A3→A4"})
    assert set(world.deliver().values()) == {1}
    nurture = {
        "salesforce": "Nurture",
        "hubspot": "lead",
        "dataverse": 100000001,
        "webhook": "lead",
        "zoho": "Nurture",
    }
    assert {crm: held[0] for crm, held in world.held().items()} == dict.fromkeys(mql, "A4")
    assert {crm: held[3] for crm, held in world.held().items()} == nurture
    [move] = [e for e in world.history() if e.kind == "stage" and e.data["to"] == "lead"]
    assert move.actor == "leadbridge" and "backward move by marketing" in move.data["reason"]
    assert move.at == world.now + 46 * DAY


def test_the_crms_schema_checks_know_the_score_fields(world: World) -> None:
    for target in world.targets:
        assert set(type(target).score_fields) <= set(target.fields.fields), target.name
        if isinstance(target, SchemaChecker):
            problems = [p for p in target.schema_problems() if _scoring(p.key + p.message)]
            assert not problems, problems
    sales = next(t for t in world.targets if t.config.kind == "salesforce")
    world.crm["salesforce"].fields.discard("LeadBridge_Fit__c")
    [missing] = [p for p in sales.schema_problems() if "LeadBridge_Fit__c" in p.key]
    assert "does not exist" in missing.message
    hubspot = next(t for t in world.targets if t.config.kind == "hubspot")
    world.crm["hubspot"].properties.discard("leadbridge_engagement")
    world.crm["hubspot"].definitions.pop("leadbridge_engagement")
    [missing] = [p for p in hubspot.schema_problems() if "leadbridge_engagement" in p.message]
    assert "a number" in missing.fix
    assert not [
        p for p in hubspot.schema_problems(create_missing=True) if "engagement" in p.message
    ]
    assert world.crm["hubspot"].definitions["leadbridge_engagement"]["type"] == "number"


def _scoring(text: str) -> bool:
    return any(word in text.lower() for word in ("grade", "_fit", "engagement"))
