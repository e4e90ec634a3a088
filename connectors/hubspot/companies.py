"""HubSpot: one contact per person, linked to their company (`companies: associate`).

After a batch of contacts lands, each contact whose email is at an employer's domain
(personal mailboxes — gmail.com, outlook.com … — excluded: `identity.mail_domain`) is linked
to the company with that `domain`, in three batch calls for the whole batch:

1. `POST /crm/v3/objects/companies/search` — the companies that exist, `domain IN (…)`
   (developers.hubspot.com/docs/api-reference/latest/crm/search-the-crm);
2. `POST /crm/v3/objects/companies/batch/create` — the missing ones, named as the person
   typed their company (else the domain); an existing company is never written;
3. `POST /crm/v4/associations/contacts/companies/batch/associate/default` — the default
   (unlabelled) contact-to-company association, which HubSpot creates once however often it
   is asked (developers.hubspot.com/docs/api-reference/legacy/crm/associations/
   associate-records/batch/create-associations).

Coexistence with HubSpot's own "Create and associate companies with contacts" setting
(knowledge.hubspot.com/articles/kcs_article/contacts/automatically-create-and-associate-
companies-with-contacts): HubSpot matches the email domain to the Company Domain Name and
creates a company only when none has it. leadbridge searches by the same domain first, so
whichever of the two comes first makes the company and the other re-uses it; associating a
pair that is associated already changes nothing. With the setting on, `companies: off` is
enough for the link (HubSpot does it); `associate` adds the company name the person typed
on companies leadbridge creates, and works with the setting off.

A company step that fails never fails the contact: it landed, and the result says what was
not linked (`dropped["company"]`); the next push of the lead tries again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from leadbridge.core.domain.identity import mail_domain
from leadbridge.core.domain.models import Lead

SEARCH_IN_LIMIT = 100  # values of one IN filter, and the page size asked for


@dataclass(frozen=True)
class Link:
    """A contact that landed and the company it should be linked to."""

    contact_id: str
    domain: str
    name: str


def links_for(groups: Sequence[tuple[str, list[Lead]]]) -> list[Link]:
    """(contact id, the person's leads) → the company each contact belongs with: by the
    email's domain, named as the most recently active lead typed the company."""
    out = []
    for contact_id, leads in groups:
        latest = max(leads, key=lambda lead: (lead.last_seen is not None, lead.last_seen))
        domain = mail_domain(latest.email)
        if domain:
            out.append(Link(contact_id, domain, latest.company or domain))
    return out


def search_body(domains: Sequence[str]) -> dict[str, Any]:
    return {
        "filterGroups": [
            {"filters": [{"propertyName": "domain", "operator": "IN", "values": list(domains)}]}
        ],
        "properties": ["domain", "name"],
        "limit": SEARCH_IN_LIMIT,
    }


def found_domains(body: Mapping[str, Any]) -> dict[str, str]:
    """domain → company id from a search answer (the oldest company wins a shared domain:
    HubSpot's own ids grow with time)."""
    found: dict[str, str] = {}
    rows = [r for r in body.get("results") or [] if isinstance(r, dict)]
    for row in sorted(
        rows, key=lambda r: int(str(r.get("id") or 0)) if str(r.get("id") or "").isdigit() else 0
    ):
        domain = str((row.get("properties") or {}).get("domain") or "").lower()
        if domain and domain not in found:
            found[domain] = str(row["id"])
    return found


def create_body(missing: Mapping[str, str]) -> dict[str, Any]:
    """domain → name: one input per company, traced by its domain."""
    return {
        "inputs": [
            {"properties": {"domain": domain, "name": name}, "objectWriteTraceId": domain}
            for domain, name in missing.items()
        ]
    }


def created_domains(body: Mapping[str, Any]) -> dict[str, str]:
    return {
        str((r.get("properties") or {}).get("domain") or "").lower(): str(r["id"])
        for r in body.get("results") or []
        if isinstance(r, dict) and r.get("id")
    }


def associate_body(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    return {"inputs": [{"from": {"id": c}, "to": {"id": k}} for c, k in pairs]}


def associated(body: Mapping[str, Any]) -> set[tuple[str, str]]:
    return {
        (str((r.get("from") or {}).get("id")), str((r.get("to") or {}).get("id")))
        for r in body.get("results") or []
        if isinstance(r, dict)
    }
