"""HubSpot contact properties (reference §3.5) and lifecycle stage internal values.

HubSpot's opt-outs (`hs_email_optout*`) are read-only through the CRM API: a contact is
unsubscribed through the communication-preferences API, never by a property, so no opt-out
is in this map. The marketplace DNC action goes to leadbridge's own property.
"""

from __future__ import annotations

from leadbridge.core.domain.mapping import FieldMap

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
        "leadbridge_marketplace_dnc": "marketplace_dnc",
    },
    # Read-only through the CRM API (subscriptions change through their own API): listed so
    # nothing a field map says can ever send them.
    consent=frozenset({"hs_email_optout"}),
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
DNC_PROPERTY = "leadbridge_marketplace_dnc"
# Fit × engagement (docs/scoring.md), sent only when configured: property → (source, type).
SCORE_PROPERTIES = {
    "leadbridge_grade": ("grade", "string"),
    "leadbridge_fit": ("fit", "number"),
    "leadbridge_engagement": ("engagement", "number"),
}
