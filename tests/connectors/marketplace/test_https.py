from __future__ import annotations

import pytest

from leadbridge.connectors.marketplace import parse_payload
from leadbridge.connectors.marketplace.https import (
    UNPARSED,
    parse_https_payload,
    payload_key,
    read_record,
)
from leadbridge.core.connector import MalformedLead
from leadbridge.core.domain import normalize


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


# --- hostile values ----------------------------------------------------------------------

SOURCE = "AzureMarketplace-INS|contoso.app"


def _nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


def test_description_nested_a_thousand_deep_is_dropped_with_a_flag() -> None:
    lead = parse_https_payload(
        {
            "LeadSource": SOURCE,
            "UserDetails": {"Email": "a@contoso.com"},
            "Description": '{"a":' + "[" * 1000 + "]" * 1000 + "}",
        }
    )
    assert lead.email == "a@contoso.com"
    assert (lead.notes, lead.attribution) == (None, {})
    assert "unreadable_description" in lead.flags


def test_unreadable_person_fields_are_dropped_with_a_flag_each() -> None:
    lead = parse_https_payload(
        {
            "LeadSource": SOURCE,
            "OfferTitle": "Contoso " * 100,  # its key would not fit the store's offer key
            "UserDetails": {
                "Email": "a@contoso.com",
                "FirstName": "Ada\ud800",  # a lone surrogate: no serializer takes it
                "Company": "C" * (normalize.MAX_FIELD_CHARS + 1),
                "Title": '=HYPERLINK("http://x")\x00',  # odd text: kept, NUL removed
            },
        }
    )
    assert (lead.first_name, lead.company, lead.offer_title) == (None, None, None)
    assert lead.title == '=HYPERLINK("http://x")'
    assert {"unreadable_first_name", "unreadable_company", "unreadable_offer_title"} <= set(
        lead.flags
    )


def test_an_unreadable_email_is_an_invalid_one() -> None:
    lead = parse_https_payload({"LeadSource": SOURCE, "UserDetails": {"Email": "a\ud800@b.co"}})
    assert lead.email is None
    assert {"unreadable_email", "invalid_email"} <= set(lead.flags)


def test_an_unreadable_lead_source_rejects_the_record_naming_the_field() -> None:
    with pytest.raises(MalformedLead) as err:
        parse_https_payload({"LeadSource": "A" * 5000, "UserDetails": {}})
    assert err.value.field == "LeadSource" and "unreadable" in err.value.reason
    assert err.value.fix


def test_idna_forms_of_one_address_are_one_email_and_lookalikes_are_flagged() -> None:
    def lead(email: str):
        return parse_https_payload({"LeadSource": SOURCE, "UserDetails": {"Email": email}})

    assert lead("alice@bücher.de").email == lead("alice@xn--bcher-kva.de").email
    assert "lookalike_email" not in lead("alice@bücher.de").flags
    spoof = lead("alice@аpple.com")  # Cyrillic а
    assert spoof.email == "alice@аpple.com" and "lookalike_email" in spoof.flags


@pytest.mark.parametrize("kind", ["https", "table", "csv", "referral"])
def test_a_payload_nested_past_the_bound_is_malformed_for_every_parser(kind: str) -> None:
    payload = {"id": "r1", "LeadSource": SOURCE, "UserDetails": {"x": _nested(300)}}
    with pytest.raises(MalformedLead) as err:
        parse_payload(kind, payload, None)
    assert err.value.field == "body" and "nested more than" in err.value.reason


@pytest.mark.parametrize("depth", [300, 1000, 2000])
def test_a_deep_record_is_read_as_landable_text(depth: int) -> None:
    line = '{"LeadSource":"x","X":' + "[" * depth + "]" * depth + "}"
    payload = read_record(line, "line 7")
    assert payload[UNPARSED] == line  # nothing lost: the raw text is kept
    assert payload["_error"].startswith("line 7: ")
    assert len(payload_key(payload)) == 64  # the payload key no longer fails


def test_records_within_the_bound_are_read_as_objects() -> None:
    assert read_record(b'{"LeadSource": "x", "Tags": [["a"]]}') == {
        "LeadSource": "x",
        "Tags": [["a"]],
    }
    assert "over" in read_record("x" * (2 * 1024 * 1024))["_error"]
