"""People and companies in Dataverse: one `contact` per person, one `account` per company,
and every (person, offer) lead bound to both.

Customer Insights – Journeys works on contacts ("Marketing uses contacts to represent
*people* and leads to represent *specific expressions of interest*", reference §1.1): a
loose lead is invisible to it. So each lead goes out as one change set of the `$batch`:

1. `PATCH accounts(<account key>='<company key>')` — the account, when the company is known
   (upsert by alternate key: create or update, never a plain create);
2. `PATCH contacts(<contact key>='<person key>')` — the contact, bound to its account
   (`parentcustomerid_account@odata.bind`) when the contact has no company yet;
3. `PATCH leads(<lead key>='…')` — the lead, with `parentcontactid@odata.bind` and
   `parentaccountid@odata.bind` naming the records above.

The keys are leadbridge's own hex keys (`person_key`, `company_key`), never the email:
an alternate key refuses values holding `+ & % / ? : * < > \\` (reference §1.2) and
plus-addressed emails are common. A change set is atomic, so a lead never lands without
its parents; with `odata.continue-on-error` one person's refusal doesn't stop the others.

The binds name the records by Content-ID (`$1`: "a variable that contains the Uri for any
entity created in that operation", execute-batch-operations-using-web-api.md) or, with
`parent_bind: alternate_key`, by their alternate key (`/contacts(lb_personkey='…')`,
use-alternate-key-reference-record.md). Whether Dataverse resolves `$n` for an upsert that
*updated* is not documented (reference §1.4, UNCONFIRMED): the alternate-key form is the
documented fallback and costs nothing more.

Write policy (docs/mapping.md) holds for both tables: a person's values are written only
where the CRM holds none, consent is one-way (the contact's `donot*` only ever true), and a
lead or contact a salesperson re-parented keeps its parent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from leadbridge.core.domain.identity import company_key, person_key
from leadbridge.core.domain.mapping import FieldMap
from leadbridge.core.domain.models import Lead

Model = Literal["contacts_and_leads", "leads"]
ParentBind = Literal["content_id", "alternate_key"]

CONSENT = frozenset(
    {"donotemail", "donotbulkemail", "donotphone", "donotpostalmail", "donotfax", "donotsendmm"}
)

# contact columns: learn.microsoft.com/power-apps/developer/data-platform/reference/entities/
# contact (lastname is ApplicationRequired, 50; emailaddress1 100; jobtitle 100).
CONTACT_FIELDS = FieldMap(
    fields={
        "firstname": "first_name",
        "lastname": "last_name",
        "emailaddress1": "email",
        "telephone1": "phone",
        "jobtitle": "title",
        "address1_country": "country_name",
        "donotemail": "opted_out_email",
        "donotbulkemail": "opted_out_bulk_email",
        "donotphone": "opted_out_phone",
    },
    required=frozenset({"lastname"}),
    consent=CONSENT,
    lengths={
        "firstname": 50,
        "lastname": 50,
        "emailaddress1": 100,
        "telephone1": 50,
        "jobtitle": 100,
        "address1_country": 80,
    },
)

# account columns: .../reference/entities/account (name is ApplicationRequired, 160).
ACCOUNT_FIELDS = FieldMap(
    fields={"name": "company"},
    required=frozenset({"name"}),
    lengths={"name": 160},
)

# Lookup properties read back to see whether a parent is set: `_<navigation property>_value`
# (web-api-properties.md, "Lookup properties").
LEAD_PARENT_CONTACT = "_parentcontactid_value"
LEAD_PARENT_ACCOUNT = "_parentaccountid_value"
CONTACT_PARENT = "_parentcustomerid_value"


@dataclass(frozen=True)
class Parents:
    """Which contact and account a lead hangs off: leadbridge's keys for them."""

    contact: str | None
    account: str | None


def parents_of(lead: Lead) -> Parents:
    """The person's key from the email; the company's from its name and email domain."""
    return Parents(
        contact=person_key(lead.email) if lead.email else None,
        account=company_key(lead.company, lead.email),
    )


@dataclass(frozen=True)
class Tables:
    """Where contacts and accounts live and how they are keyed (from the target config)."""

    contacts: str
    contact_key: str
    accounts: str
    account_key: str
    bind: ParentBind

    def contact_ref(self, key: str, content_id: str) -> str:
        return (
            content_ref(content_id)
            if self.bind == "content_id"
            else key_ref(self.contacts, self.contact_key, key)
        )

    def account_ref(self, key: str, content_id: str) -> str:
        return (
            content_ref(content_id)
            if self.bind == "content_id"
            else key_ref(self.accounts, self.account_key, key)
        )


def content_ref(content_id: str) -> str:
    return f"${content_id}"


def key_ref(entity_set: str, column: str, key: str) -> str:
    """`/contacts(lb_personkey='…')`: a key is hex, so it needs no escaping beyond quoting."""
    return f"/{entity_set}({column}='{key}')"


def contact_body(
    lead: Lead,
    fields: FieldMap,
    existing: dict[str, Any] | None,
    account_ref: str | None,
    placeholder: str,
    values: dict[str, Any],
) -> tuple[dict[str, Any], list[str]]:
    """The contact's columns under the write policies, and the ones a person's value kept.
    The contact is bound to its account only when it has no company yet."""
    if existing is None:
        body, kept = fields.apply(values, placeholder), []
    else:
        body, kept = fields.update(values, existing, placeholder)
    if account_ref and not (existing or {}).get(CONTACT_PARENT):
        body["parentcustomerid_account@odata.bind"] = account_ref
    return body, kept


def account_body(
    fields: FieldMap, existing: dict[str, Any] | None, placeholder: str, values: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The account's columns: its name is set when leadbridge makes it, and kept after."""
    if existing is None:
        return fields.apply(values, placeholder), []
    return fields.update(values, existing, placeholder)


def lead_binds(
    existing: dict[str, Any] | None, contact_ref: str | None, account_ref: str | None
) -> dict[str, str]:
    """The lead's parent binds: set on a new lead, and on an existing one only where no
    parent is set (a salesperson's re-parenting stands)."""
    current = existing or {}
    binds = {}
    if contact_ref and not current.get(LEAD_PARENT_CONTACT):
        binds["parentcontactid@odata.bind"] = contact_ref
    if account_ref and not current.get(LEAD_PARENT_ACCOUNT):
        binds["parentaccountid@odata.bind"] = account_ref
    return binds
