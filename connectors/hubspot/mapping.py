"""HubSpot contact properties (reference §3.5) and lifecycle stage internal values."""

from __future__ import annotations

from leadbridge.core.mapping import FieldMap

FIELD_MAP = FieldMap(
    fields={
        "email": "email",
        "firstname": "first_name",
        "lastname": "last_name",
        "phone": "phone",
        "company": "company",
        "jobtitle": "title",
        "country": "country_name",
        "message": "notes",
    },
)

# lifecyclestage internal values; `disqualified` has no lifecycle stage (it is kept in the
# leadbridge stage property, which leadbridge can move both ways).
LIFECYCLE_VALUES = {
    "subscriber": "subscriber",
    "lead": "lead",
    "mql": "marketingqualifiedlead",
    "sql": "salesqualifiedlead",
    "opportunity": "opportunity",
    "customer": "customer",
}

# The custom properties leadbridge writes (created by `config check --online --create-missing`).
LEAD_KEY_PROPERTY = "leadbridge_lead_key"
STAGE_PROPERTY = "leadbridge_stage"
OFFERS_PROPERTY = "leadbridge_offers"
