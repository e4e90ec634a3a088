"""Salesforce Lead fields (reference §2.5) and the Lead_Stage__c picklist values.

Consent: `HasOptedOutOfEmail`, `DoNotCall` and `HasOptedOutOfFax` are opt-outs, sent only as
true from an explicit withdrawal (`opted_out`), never as false. The marketplace DNC action
(a cross-listed partner was asked) is not an opt-out: it goes to leadbridge's own checkbox
`LeadBridge_Marketplace_DNC__c`.
"""

from __future__ import annotations

from leadbridge.core.mapping import FieldMap, WritePolicy

DNC_FIELD = "LeadBridge_Marketplace_DNC__c"

FIELD_MAP = FieldMap(
    fields={
        "FirstName": "first_name",
        "LastName": "last_name",
        "Email": "email",
        "Phone": "phone",
        "Company": "company",
        "Title": "title",
        "Country": "country_name",
        "Description": "notes",
        "LeadSource": "=Web",  # a standard picklist value every org has
        "HasOptedOutOfEmail": "opted_out",
        "DoNotCall": "opted_out",
        DNC_FIELD: "marketplace_dnc",
    },
    required=frozenset({"LastName", "Company"}),
    policies={"LeadSource": WritePolicy.ON_CREATE},
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
