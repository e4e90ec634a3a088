"""Dataverse lead columns (reference §1.7) and the stage choice values."""

from __future__ import annotations

from leadbridge.core.mapping import FieldMap

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
        "donotemail": "do_not_contact",
        "donotbulkemail": "do_not_contact",
        "donotphone": "do_not_contact",
    },
    required=frozenset({"lastname", "subject"}),
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
