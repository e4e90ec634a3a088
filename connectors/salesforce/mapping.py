"""Salesforce Lead fields (reference §2.5) and the Lead_Stage__c picklist values.

Consent: `HasOptedOutOfEmail`, `DoNotCall` and `HasOptedOutOfFax` are opt-outs, sent only as
true from an explicit withdrawal of that channel (`opted_out_email`, `_phone`, `_fax`: read
back from any CRM, core/sync/consentsync.py), never as false. The marketplace DNC action
(a cross-listed partner was asked) is not an opt-out: it goes to leadbridge's own checkbox
`LeadBridge_Marketplace_DNC__c`.

Country: orgs with State and Country/Territory Picklists refuse a `Country` that is not one
of their integration values (FIELD_INTEGRITY_EXCEPTION), so there leadbridge sends the ISO
code as `CountryCode` and leaves `Country` to Salesforce; elsewhere `Country` gets the ISO
3166 English short name, which is what the standard integration values default to ("Integration
values for standard states, countries, and territories default to the full ISO-standard
names": help.salesforce.com, xcloud.state_country_and_territory_picklist_fields.htm).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from leadbridge.core.domain.mapping import FieldMap, FieldSpec, WritePolicy

DNC_FIELD = "LeadBridge_Marketplace_DNC__c"
COUNTRY_NAME = "country_iso_name"  # the built-in source of `Country`
COUNTRY_FIELDS = frozenset({"Country", "CountryCode"})

FIELD_MAP = FieldMap(
    fields={
        "FirstName": "first_name",
        "LastName": "last_name",
        "Email": "email",
        "Phone": "phone",
        "Company": "company",
        "Title": "title",
        "Country": COUNTRY_NAME,
        "Description": "notes",
        "LeadSource": "=Web",  # a standard picklist value every org has
        "HasOptedOutOfEmail": "opted_out_email",
        "DoNotCall": "opted_out_phone",
        "HasOptedOutOfFax": "opted_out_fax",
        DNC_FIELD: "marketplace_dnc",
    },
    required=frozenset({"LastName", "Company"}),
    # The person's country: a salesperson's value wins, whichever field holds it.
    policies={
        "LeadSource": WritePolicy.ON_CREATE,
        "Country": WritePolicy.IF_EMPTY,
        "CountryCode": WritePolicy.IF_EMPTY,
    },
    consent=frozenset({"HasOptedOutOfEmail", "DoNotCall", "HasOptedOutOfFax"}),
    lengths={
        "FirstName": 40,
        "LastName": 80,
        "Company": 255,
        "Title": 128,
        "Email": 80,
        "Phone": 40,
        "Country": 80,
        "Description": 32000,
    },
)

# Fit × engagement (docs/scoring.md), sent only when configured: the grid cell in a Text(2)
# field, the numbers in Number(4, 0) fields.
SCORE_FIELDS: dict[str, str | FieldSpec] = {
    "LeadBridge_Grade__c": FieldSpec(from_="grade", truncate=2),
    "LeadBridge_Fit__c": "fit",
    "LeadBridge_Engagement__c": "engagement",
}

STAGE_VALUES = {
    "subscriber": "Subscriber",
    "lead": "Nurture",
    "mql": "MQL",
    "sql": "SQL",
    "opportunity": "Opportunity",
    "customer": "Customer",
    "disqualified": "Disqualified",
}

# Per-record errorCodes that may pass on a later try; everything else is permanent.
RETRYABLE_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "REQUEST_LIMIT_EXCEEDED", "SERVER_UNAVAILABLE"})
CONVERTED_CODES = frozenset({"CANNOT_UPDATE_CONVERTED_LEAD"})


def with_country_codes(fields: FieldMap) -> FieldMap:
    """The map for an org with country picklists: leadbridge's own `Country` (a name) becomes
    `CountryCode` (ISO alpha-2), in its place and with its write policy; Salesforce then fills
    `Country` with the org's integration value for the code. A `Country` the publisher mapped
    themselves, or a `CountryCode` they already map, is left as configured."""
    if "CountryCode" in fields.fields or fields.fields.get("Country") != COUNTRY_NAME:
        return fields
    renamed = {
        ("CountryCode" if name == "Country" else name): (
            "country_code" if name == "Country" else source
        )
        for name, source in fields.fields.items()
    }
    policies = {**fields.policies, "CountryCode": fields.policy("Country")}
    return FieldMap(renamed, fields.required, fields.lengths, policies, fields.consent)


def refuses_country(errors: Iterable[Mapping[str, Any]]) -> bool:
    """Whether Salesforce refused the record for its country: FIELD_INTEGRITY_EXCEPTION on
    Country or CountryCode (the picklist's "There's a problem with this country, even though
    it may appear correct…: Country", or "The CountryCode field contains XX, which isn't an
    available country/territory.")."""
    for error in errors:
        if error.get("statusCode") != "FIELD_INTEGRITY_EXCEPTION":
            continue
        named = {str(f) for f in error.get("fields") or []}
        if named & COUNTRY_FIELDS or "country" in str(error.get("message", "")).lower():
            return True
    return False
