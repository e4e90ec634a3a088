"""Shared pieces of the alert tests: settings with channels, leads landed the real way, and a
target that confirms every record (the CRM side is not what these tests are about)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from leadbridge.core.connector import HttpTarget, Link, TargetConfig
from leadbridge.core.domain.mapping import FieldMap
from leadbridge.core.domain.models import Lead, PushResult, RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import ConnectorEntry, Settings, load_settings
from leadbridge.core.store.repo import Store


class ConfirmingTarget(HttpTarget):
    """A CRM that takes every record and says where it lives."""

    field_map: ClassVar[FieldMap] = FieldMap({"email": "email"})
    max_batch: ClassVar[int] = 200

    def __init__(self, name: str = "crm") -> None:
        super().__init__(TargetConfig(name=name, kind="scripted"))

    def upsert(
        self, leads: Sequence[Lead], links: Mapping[str, Link] | None = None
    ) -> list[PushResult]:
        self.transport.stats.requests += 1
        return [
            PushResult(lead_key=lead.lead_key, ok=True, external_id=f"rec-{lead.lead_key[:8]}")
            for lead in leads
        ]


def make_alert_settings(tmp_path: Path, channels: list[dict[str, Any]], **alerts: Any) -> Settings:
    settings = load_settings(
        None, store=f"sqlite:///{tmp_path / 'lb.db'}", alerts={"channels": channels, **alerts}
    )
    return settings.model_copy(update={"targets": [ConnectorEntry(name="crm", kind="webhook")]})


def land(
    store: Store,
    settings: Settings,
    email: str,
    *,
    action: str = "PLT",
    offer: str = "contoso.crm",
    country: str = "DE",
) -> None:
    """A marketplace lead, landed and processed as the pipeline does it."""
    local = email.split("@")[0]
    payload = {
        "LeadSource": f"AppSource (SPZA)-{action}|{offer}",
        "UserDetails": {
            "FirstName": local.capitalize(),
            "LastName": "Tester",
            "Email": email,
            "Country": country,
            "Company": "Contoso",
            "Title": "CTO",
        },
    }
    pipeline.land_one(
        store, RawLead(source="t", source_key=f"{email}|{action}", kind="https", payload=payload)
    )
    pipeline.process_pending(store, settings)
