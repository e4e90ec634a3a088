from __future__ import annotations

import pytest

from leadbridge.connectors.base import MalformedLead
from leadbridge.connectors.marketplace.https import parse_https_payload, payload_key


def test_keys_in_any_case() -> None:
    body = {
        "USERDETAILS": {"firstNAME": "Ada", "EMAIL": "Ada@X.io", "country": "gb"},
        "leadsource": "AzureMarketplace-INS|pub.offer",
        "OfferTitle": "Offer",
    }
    lead = parse_https_payload(body)
    assert (lead.first_name, lead.email, lead.country, lead.offer_id) == (
        "Ada",
        "ada@x.io",
        "GB",
        "pub.offer",
    )


def test_missing_user_details_is_a_lead_without_email_not_an_error() -> None:
    lead = parse_https_payload({"LeadSource": "AzureMarketplace", "ActionCode": "INS"})
    assert lead.email is None and "no_email" in lead.flags


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([1, 2], "body"),
        ({"LeadSource": "AzureMarketplace", "UserDetails": "Ada"}, "UserDetails"),
        ({"LeadSource": {"nested": 1}}, "leadsource"),
        ({"UserDetails": {"Email": "a@b.co"}}, "LeadSource"),
    ],
)
def test_malformed_bodies_name_the_field(body: object, field: str) -> None:
    with pytest.raises(MalformedLead) as err:
        parse_https_payload(body)
    assert err.value.field == field
    assert err.value.fix


def test_invalid_email_is_flagged_and_not_used_as_identity() -> None:
    lead = parse_https_payload(
        {"LeadSource": "AzureMarketplace-INS|a.b", "UserDetails": {"Email": "not an email"}}
    )
    assert lead.email is None and "invalid_email" in lead.flags


def test_payload_key_ignores_key_order_only() -> None:
    assert payload_key({"a": 1, "b": 2}) == payload_key({"b": 2, "a": 1})
    assert payload_key({"a": 1}) != payload_key({"a": 2})


def test_structured_values_where_text_belongs_count_as_absent() -> None:
    lead = parse_https_payload(
        {
            "LeadSource": "AzureMarketplace-INS|c.o",
            "UserDetails": {
                "Email": "a@b.io",
                "FirstName": {"given": "Ada"},
                "Company": ["Contoso"],
            },
        }
    )
    assert (lead.first_name, lead.company, lead.email) == (None, None, "a@b.io")
