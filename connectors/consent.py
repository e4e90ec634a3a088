"""What a CRM's opt-out read back is, for every connector's `ConsentReader.opt_outs`.

Consent flows one way (docs/mapping.md): an opt-out seen in one CRM is recorded on the
person with its source and time, and fanned out to the others as true — never as false. A
connector reports each record it finds opted out, as a plain mapping core validates:

    {"target": "sales", "lead_key": "…" | None, "person_key": "…" | None,
     "external_id": "00Q…", "channels": ["email", "phone"], "at": datetime (the CRM's)}

`lead_key` (a lead record) or `person_key` (a person-level record: a Dataverse contact) says
whose it is; no address or name is carried. `channels` come from CHANNELS: what the person
withdrew from, in leadbridge's words, whatever the CRM calls its flags.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

# email: no email at all; bulk_email: no marketing email; phone: do not call; fax; mail:
# no postal mail. A CRM flag maps to one of these (each connector's consent module says how).
CHANNELS = frozenset({"email", "bulk_email", "phone", "fax", "mail"})


def opt_out(
    target: str,
    external_id: str,
    channels: Iterable[str],
    at: datetime,
    *,
    lead_key: str | None = None,
    person_key: str | None = None,
) -> dict[str, Any]:
    """One opted-out record as core reads it (the shape above)."""
    named = sorted(set(channels))
    unknown = set(named) - CHANNELS
    if unknown:
        raise ValueError(f"unknown consent channels {sorted(unknown)}")
    return {
        "target": target,
        "lead_key": lead_key,
        "person_key": person_key,
        "external_id": external_id,
        "channels": named,
        "at": at,
    }
