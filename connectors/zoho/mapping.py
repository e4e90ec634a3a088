"""Zoho CRM Lead fields, the stage picklist values, and Zoho's error codes by outcome.

Field API names, types and lengths: the Leads module's fields as the Fields Metadata API
lists them (zoho.com/crm/developer/docs/api/v8/field-meta.html; the sample response gives
First_Name 40, Last_Name 80, Company 200, Designation 100, Email 100, Phone 30, Country 100,
Description 32000 characters, and `Last_Name` as `system_mandatory`). `Company` is mandatory
in the standard Leads layout, so both get the placeholder when a lead is created without them.

Consent: `Email_Opt_Out` is the person's opt-out, sent only as true from an explicit
withdrawal of email (`opted_out_email`, read back from any CRM), never as false. The
marketplace DNC action is not an opt-out: it goes to leadbridge's own checkbox
`LeadBridge_Marketplace_DNC`. `Lead_Source` says where a
lead came from when it was made ("Online Store" is one of the values every org's picklist
starts with); a salesperson may reclassify it, so it is written on create only.
"""

from __future__ import annotations

from leadbridge.core.domain.mapping import FieldMap, FieldSpec, WritePolicy

KEY_FIELD = "LeadBridge_Key"  # a unique ("Do not allow duplicate values") text field, 32+
STAGE_FIELD = "LeadBridge_Stage"  # a picklist of STAGE_VALUES
DNC_FIELD = "LeadBridge_Marketplace_DNC"  # a checkbox leadbridge owns
# Fit × engagement (docs/scoring.md), sent only when configured: the grid cell in a
# single line (2), the numbers in Number fields.
SCORE_FIELDS: dict[str, str | FieldSpec] = {
    "LeadBridge_Grade": FieldSpec(from_="grade", truncate=2),
    "LeadBridge_Fit": "fit",
    "LeadBridge_Engagement": "engagement",
}

FIELD_MAP = FieldMap(
    fields={
        "First_Name": "first_name",
        "Last_Name": "last_name",
        "Email": "email",
        "Phone": "phone",
        "Company": "company",
        "Designation": "title",
        "Country": "country_name",
        "Description": "notes",
        "Lead_Source": "=Online Store",
        "Email_Opt_Out": "opted_out_email",
        DNC_FIELD: "marketplace_dnc",
    },
    required=frozenset({"Last_Name", "Company"}),
    policies={"Lead_Source": WritePolicy.ON_CREATE},
    consent=frozenset({"Email_Opt_Out"}),
    lengths={
        "First_Name": 40,
        "Last_Name": 80,
        "Email": 100,
        "Phone": 30,
        "Company": 200,
        "Designation": 100,
        "Country": 100,
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

# Per-record codes that may pass on a later try (a record locked by an approval or a locking
# rule is unlocked when it ends; a server error is the server's); everything else a record
# can be refused for is about what was sent: a dead letter with Zoho's answer.
RETRYABLE_CODES = frozenset({"RECORD_LOCKED", "INTERNAL_ERROR", "TOO_MANY_REQUESTS"})
# Whole-request codes that no retry will fix: the connected user, the client's scopes or the
# URL are wrong (api_domain, api_version): the target stops until an operator acts.
FATAL_CODES = frozenset(
    {
        "NO_PERMISSION",
        "AUTHORIZATION_FAILED",
        "OAUTH_SCOPE_MISMATCH",
        "INVALID_MODULE",
        "INVALID_URL_PATTERN",
        "FEATURE_NOT_SUPPORTED",
    }
)
# Field types whose `length` limits what a value may hold (Fields Metadata API, data_type).
TEXT_TYPES = frozenset({"text", "textarea", "email", "phone", "website"})
