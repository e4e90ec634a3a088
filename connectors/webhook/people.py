"""The person and company a webhook lead belongs to, as blocks of their own: `person` and
`organization` (the lead's `company` key already carries the company's name as typed).

A receiver that keeps people and companies (a CRM of its own, a data warehouse) upserts
them by leadbridge's keys, the same ones every other target uses: `person.key` is
`person_key(email)`, `organization.key` is `company_key(company, email)` (normalised name plus
the employer's email domain; see core/domain/identity.py). Two leads of one person carry
the same person block; colleagues who name their company alike carry the same company key.
"""

from __future__ import annotations

from typing import Any

from leadbridge.core.domain.identity import company_key, mail_domain, person_key
from leadbridge.core.domain.models import Lead

PERSON_FIELDS = ("email", "first_name", "last_name", "phone", "country", "title")


def person_block(lead: Lead) -> dict[str, Any] | None:
    """Who the lead is: their key and identity fields (absent ones left out)."""
    if not lead.email:
        return None
    block: dict[str, Any] = {"key": person_key(lead.email)}
    block |= {name: getattr(lead, name) for name in PERSON_FIELDS if getattr(lead, name)}
    return block


def company_block(lead: Lead) -> dict[str, Any] | None:
    """Where they work, when they said: the key, the name as typed, the employer's domain
    (never a personal mailbox's)."""
    key = company_key(lead.company, lead.email)
    if key is None:
        return None
    block: dict[str, Any] = {"key": key, "name": lead.company}
    domain = mail_domain(lead.email)
    if domain:
        block["domain"] = domain
    return block
