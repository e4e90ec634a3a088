"""The right of access: everything leadbridge holds on one person, as one JSON document.

What `leadbridge leads export EMAIL` prints: each of the person's leads in full (the
normalised fields, notes, attribution, score rules), its history, where it was delivered
(target, the CRM's record id, when), its dead letters, and every raw payload it was built
from; and raw leads quarantined before they became a lead whose payload names the address
(a Microsoft test lead kept aside, a record processing broke on).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from leadbridge.core.app.views import lead_story
from leadbridge.core.domain.models import lead_from_json, lead_to_dict
from leadbridge.core.store.tables import dead_letters, leads, quarantine, raw_leads
from leadbridge.core.sync.erasure import quarantined_naming


def export_person(conn: Connection, email: str, now: datetime) -> dict[str, Any] | None:
    """The person's data, or None when nothing is held on the address."""
    address = email.strip().lower()
    held = [
        lead_from_json(row.data)
        for row in conn.execute(
            select(leads.c.data).where(leads.c.email == address).order_by(leads.c.first_seen)
        )
    ]
    quarantined = _quarantined_naming(conn, address)
    if not held and not quarantined:
        return None
    return {
        "email": address,
        "exported_at": now.isoformat(),
        "leads": [_lead(conn, lead) for lead in held],
        "quarantined_raw_leads": quarantined,
    }


def _lead(conn: Connection, lead: Any) -> dict[str, Any]:
    story = lead_story(conn, lead)
    letters = [
        {
            "target": row.target,
            "error": row.error,
            "body": row.body,
            "created_at": row.created_at.isoformat(),
            "resolution": row.resolution,
        }
        for row in conn.execute(
            select(dead_letters)
            .where(dead_letters.c.lead_key == lead.lead_key)
            .order_by(dead_letters.c.id)
        )
    ]
    payloads = {
        row.id: row.payload
        for row in conn.execute(
            select(raw_leads.c.id, raw_leads.c.payload).where(raw_leads.c.lead_key == lead.lead_key)
        )
    }
    raws = [raw | {"payload": payloads.get(raw["id"])} for raw in story["raw_leads"]]
    return {
        "lead": lead_to_dict(lead),
        "history": story["history"],
        "delivered_to": story["links"],
        "dead_letters": letters,
        "raw_leads": raws,
    }


def _quarantined_naming(conn: Connection, address: str) -> list[dict[str, Any]]:
    """Quarantined raw leads whose payload holds the address (they never became a lead)."""
    ids = quarantined_naming(conn, address)
    if not ids:
        return []
    stmt = (
        select(raw_leads, quarantine.c.reason, quarantine.c.at)
        .join(quarantine, quarantine.c.raw_lead_id == raw_leads.c.id)
        .where(raw_leads.c.id.in_(ids))
        .order_by(raw_leads.c.id)
    )
    return [
        {
            "id": row.id,
            "source": row.source,
            "received_at": row.received_at.isoformat(),
            "reason": row.reason,
            "quarantined_at": row.at.isoformat(),
            "payload": row.payload,
        }
        for row in conn.execute(stmt)
    ]
