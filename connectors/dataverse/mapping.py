"""Dataverse lead columns (reference §1.7) and the stage choice values.

Consent: the `donot*` columns and `msdyn_gdproptout` are opt-outs, sent only as true from an
explicit withdrawal of that channel (`opted_out_email`, `_bulk_email`, `_phone`: read back
from any CRM), never as false. The marketplace DNC action is not an
opt-out: it goes to leadbridge's own column `lb_marketplacednc`. `subject` (Topic) is
ApplicationRequired: the API accepts a lead without it but the form can't save one, so a
new lead always gets a topic.
"""

from __future__ import annotations

from leadbridge.core.domain.mapping import FieldMap, FieldSpec, WritePolicy

DNC_COLUMN = "lb_marketplacednc"
# Fit × engagement (docs/scoring.md), sent only when configured: the grid cell in a single
# line of text (2), the numbers in Whole number columns.
SCORE_FIELDS: dict[str, str | FieldSpec] = {
    "lb_grade": FieldSpec(from_="grade", truncate=2),
    "lb_fit": "fit",
    "lb_engagement": "engagement",
}

FIELD_MAP = FieldMap(
    fields={
        "firstname": "first_name",
        "lastname": "last_name",
        "subject": "topic",
        "emailaddress1": "email",
        "telephone1": "phone",
        "companyname": "company",
        "jobtitle": "title",
        "address1_country": "country_name",
        "description": "notes",
        "donotemail": "opted_out_email",
        "donotbulkemail": "opted_out_bulk_email",
        "donotphone": "opted_out_phone",
        DNC_COLUMN: "marketplace_dnc",
    },
    required=frozenset({"lastname", "subject"}),
    policies={"subject": WritePolicy.IF_EMPTY},
    consent=frozenset(
        {
            "donotemail",
            "donotbulkemail",
            "donotphone",
            "donotpostalmail",
            "donotfax",
            "donotsendmm",
            "msdyn_gdproptout",
        }
    ),
    lengths={
        "firstname": 50,
        "lastname": 50,
        "subject": 300,
        "emailaddress1": 100,
        "telephone1": 50,
        "companyname": 100,
        "jobtitle": 100,
        "address1_country": 80,
        "description": 2000,
    },
)

# Options of the custom global choice behind `stage_column` (a publisher prefix's range).
STAGE_VALUES = {
    "subscriber": 100000000,
    "lead": 100000001,
    "mql": 100000002,
    "sql": 100000003,
    "opportunity": 100000004,
    "customer": 100000005,
    "disqualified": 100000006,
}
LEAD_SOURCE_WEB = 8  # leadsourcecode option "Web"
