"""Salesforce: don't make a Lead of a known customer (`existing_contact`).

When a marketplace lead's email already belongs to a Contact, a new Lead would put a second
record of the same person in front of sales. `existing_contact` decides:

- `lead` (default, as before): write the Lead anyway;
- `campaign_member`: add the Contact to the Campaign the lead's attribution names
  (`attribution.<campaign_attribution>`, matched on Campaign Name) or to
  `default_campaign_id`, instead of creating a Lead;
- `task`: log the marketplace action as a Task on the Contact (`WhoId`), owned by the
  Contact's owner, upserted on leadbridge's lead key (an External ID on Activity), so a
  retry or the person's next click updates the same Task.

The Contacts are found with one SOQL per batch, not per lead, and it brings each Contact's
memberships and leadbridge's Tasks along as parent-to-child subqueries (`CampaignMembers`,
`Tasks`: developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/
sforce_api_calls_soql_relationships_query_using.htm), so nothing is created twice. A lead that
is already a Lead here (its link's id has Lead's key prefix `00Q`) stays one: it is updated
as before, never moved. A membership that exists already is "DUPLICATE_VALUE: Already a
campaign member." (github.com/openstax/tutor-server/pull/1653): that is a success.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from simple_salesforce import format_soql

from leadbridge.core.domain.mapping import canonical, truncate
from leadbridge.core.domain.models import Lead, PushResult

LEAD_PREFIX = "00Q"  # the key prefix of a Lead Id (what a link to a Lead starts with)
SUBJECT_LENGTH = 255  # Task.Subject
DESCRIPTION_LENGTH = 32000  # Task.Description


@dataclass(frozen=True)
class Contact:
    """A Contact holding a lead's email, with what leadbridge already made on it."""

    id: str
    owner: str | None
    account: str | None
    campaigns: dict[str, str]  # CampaignId → CampaignMember Id
    tasks: dict[str, str]  # lead key → Task Id

    def related(self) -> dict[str, str]:
        return {"contact": self.id, **({"account": self.account} if self.account else {})}


def contacts_soql(emails: Sequence[str], task_key: str) -> str:
    """One query for every Contact of the batch's emails, with their campaign memberships and
    the Tasks leadbridge made (their key set)."""
    return format_soql(
        "SELECT Id, Email, OwnerId, AccountId, "
        "(SELECT Id, CampaignId FROM CampaignMembers), "
        "(SELECT Id, {:literal} FROM Tasks WHERE {:literal} != null) "
        "FROM Contact WHERE Email IN {}",
        task_key,
        task_key,
        sorted(set(emails)),
    )


def read_contacts(records: Sequence[Mapping[str, Any]], task_key: str) -> dict[str, Contact]:
    """Contacts by lowercased email (SOQL's `=` on Email ignores case; leadbridge's emails are
    lowercased): the first the query returns wins when two share an address."""
    found: dict[str, Contact] = {}
    for record in records:
        email = str(record.get("Email") or "").lower()
        if not email or email in found:
            continue
        found[email] = Contact(
            id=str(record["Id"]),
            owner=record.get("OwnerId"),
            account=record.get("AccountId"),
            campaigns={
                str(m["CampaignId"]): str(m["Id"])
                for m in _children(record, "CampaignMembers")
                if m.get("CampaignId")
            },
            tasks={str(t[task_key]): str(t["Id"]) for t in _children(record, "Tasks")},
        )
    return found


def _children(record: Mapping[str, Any], relationship: str) -> list[dict[str, Any]]:
    """A subquery's rows: null when there are none, else a query result of its own."""
    child = record.get(relationship)
    rows = child.get("records") if isinstance(child, dict) else None
    return [r for r in rows or [] if isinstance(r, dict)]


def diverted(
    leads: Sequence[Lead], contacts: Mapping[str, Contact], links: Mapping[str, Any]
) -> list[Lead]:
    """The leads that go to a Contact instead of a Lead: their email is a Contact's, and they
    are not a Lead here already."""
    out = []
    for lead in leads:
        link = links.get(lead.lead_key)
        is_lead = bool(link and str(getattr(link, "external_id", "") or "").startswith(LEAD_PREFIX))
        if lead.email and lead.email in contacts and not is_lead:
            out.append(lead)
    return out


def campaigns_soql(names: Sequence[str]) -> str:
    return format_soql("SELECT Id, Name FROM Campaign WHERE Name IN {}", sorted(set(names)))


def task_record(lead: Lead, contact: Contact, task_key: str) -> dict[str, Any]:
    """The Task for a lead: what leadbridge owns (subject, description, the contact, the
    date) on every write; owner and status only when it makes the Task, so a salesperson's
    reassignment or closing stands."""
    values = canonical(lead)
    notes = "\n".join(
        part
        for part in (
            f"Marketplace actions: {values['actions']}" if values["actions"] else "",
            f"Offer: {values['offer_title']}",
            lead.notes or "",
        )
        if part
    )
    record: dict[str, Any] = {
        "attributes": {"type": "Task"},
        task_key: lead.lead_key,
        "WhoId": contact.id,
        "Subject": truncate(values["topic"], SUBJECT_LENGTH),
        "Description": truncate(notes, DESCRIPTION_LENGTH),
    }
    if lead.last_seen is not None:
        record["ActivityDate"] = lead.last_seen.date().isoformat()
    if lead.lead_key not in contact.tasks:
        record["Status"] = "Not Started"
        if contact.owner:
            record["OwnerId"] = contact.owner
    return record


def member_record(contact: Contact, campaign: str) -> dict[str, Any]:
    return {
        "attributes": {"type": "CampaignMember"},
        "CampaignId": campaign,
        "ContactId": contact.id,
    }


def campaign_of(lead: Lead, attribution_key: str, by_name: Mapping[str, str], default: str) -> str:
    """The Campaign the lead's attribution names (by Name), else the configured default."""
    named = lead.attribution.get(attribution_key)
    return by_name.get(named, default) if named else default


def already_member(errors: Sequence[Mapping[str, Any]]) -> bool:
    return any(
        e.get("statusCode") == "DUPLICATE_VALUE" and "campaign member" in str(e.get("message"))
        for e in errors
    )


def ok(lead: Lead, external_id: str | None, contact: Contact, created: bool) -> PushResult:
    return PushResult(
        lead_key=lead.lead_key,
        ok=True,
        external_id=external_id,
        created=created,
        related=contact.related(),
    )
