"""Salesforce Lead fields (reference §2.5) and the Lead_Stage__c picklist values."""

from __future__ import annotations

from leadbridge.core.mapping import FieldMap

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
        "HasOptedOutOfEmail": "do_not_contact",
        "DoNotCall": "do_not_contact",
    },
    required=frozenset({"LastName", "Company"}),
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
