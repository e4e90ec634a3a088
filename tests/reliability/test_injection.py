"""Hostile text goes to every CRM verbatim and breaks no URL, OData key, SOQL query or search
body: every value that enters a URL or a query is escaped, and keys are hex."""

from __future__ import annotations

from pathlib import Path

import requests

from leadbridge.core.connector import build, sandboxes
from leadbridge.core.delivery.deliver import deliver
from leadbridge.core.domain.models import RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import load_settings
from leadbridge.core.store.repo import Store
from leadbridge.core.sync.stagesync import pull_stages

NASTY = {
    "FirstName": 'O\'Brien "The" \\ Boss',
    "LastName": "Müller-Łukasz 100% / R&D + ops\nline two 🚀",
    "Company": "שלום עולם & Co. ' OR 1=1 --",
    "Title": "Head of /api/data/v9.2/$batch?x=1&y=2",
    "Email": "o'brien+q&a/x%y@example.com",
}


def test_hostile_text_lands_verbatim_everywhere(tmp_path: Path) -> None:
    crm = sandboxes.start(["salesforce", "hubspot", "dataverse", "webhook"])
    try:
        settings = load_settings(
            None,
            store=f"sqlite:///{tmp_path / 'lb.db'}",
            targets=[sandboxes.target_entry(k, s) for k, s in crm.items()],
        )
        store = Store(settings.store)
        payload = {
            "LeadSource": "AppSource (SPZA)-PLT|contoso.o'brien&co",
            "UserDetails": NASTY,
            "OfferTitle": "Offer ' \" \\ %",
        }
        pipeline.land_one(store, RawLead(source="t", source_key="1", kind="https", payload=payload))
        pipeline.process_pending(store, settings)
        targets = [build(c, placeholder=settings.placeholder) for c in settings.target_configs()]
        reports = [deliver(t, store, settings) for t in targets]
        assert all(r.pushed == 1 and r.dead_lettered == 0 for r in reports), reports
        email = NASTY["Email"]
        expected = {
            "salesforce": ("FirstName", "LastName", "Company", "Email"),
            "hubspot": ("firstname", "lastname", "company", "email"),
            "dataverse": ("firstname", "lastname", "companyname", "emailaddress1"),
            "webhook": ("first_name", "last_name", "company", "email"),
        }
        for kind, fields in expected.items():
            [record] = crm[kind].records.values()
            got = [record[f] for f in fields]
            assert got == [NASTY["FirstName"], NASTY["LastName"], NASTY["Company"], email], kind
        # Reading stages back goes through SOQL, the HubSpot search and OData: a salesperson's
        # change on this lead must come back intact.
        [key] = crm["salesforce"].records
        requests.post(
            f"{crm['salesforce'].url}/_sandbox/stage", json={"key": key, "value": "SQL"}, timeout=5
        ).raise_for_status()
        report = pull_stages(targets, store, settings)
        assert report.errors == {} and report.applied == 1
        for target in targets:
            deliver(target, store, settings)
        assert crm["hubspot"].records[email]["lifecyclestage"] == "salesqualifiedlead"
        store.dispose()
    finally:
        sandboxes.stop(crm)
