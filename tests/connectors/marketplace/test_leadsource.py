from __future__ import annotations

import pytest

from leadbridge.connectors.marketplace.leadsource import (
    contains_test_marker,
    parse_lead_source,
)
from leadbridge.core.connector import MalformedLead


@pytest.mark.parametrize(
    ("lead_source", "channel", "action", "offer_id"),
    [
        (
            "AzureMarketplace-INS|checkpoint.check-point-r77-10sg-byol",
            "azure_marketplace",
            "INS",
            "checkpoint.check-point-r77-10sg-byol",
        ),
        (
            "AzurePortal-Create|bitnami.openedxcypress",
            "azure_portal",
            "Create",
            "bitnami.openedxcypress",
        ),
        (
            "AppSource (SPZA)-PLT|docusign.3701c77e-1cfa-4c56-91e6-3ed0b622145a",
            "appsource",
            "PLT",
            "docusign.3701c77e-1cfa-4c56-91e6-3ed0b622145a",
        ),
        ("SPZA-DNC|contoso.contoso-crm-addin", "appsource", "DNC", "contoso.contoso-crm-addin"),
        (
            "TestDrive-StartTestDrive|contoso.contoso-saas",
            "test_drive",
            "StartTestDrive",
            "contoso.contoso-saas",
        ),
        ("AzureMarketplace-INS | contoso.offer", "azure_marketplace", "INS", "contoso.offer"),
        ("  AppSource (SPZA) - PLT  |  contoso.offer ", "appsource", "PLT", "contoso.offer"),
        ("azuremarketplace-ins|contoso.offer", "azure_marketplace", "INS", "contoso.offer"),
        ("AppSource-INS|contoso.offer", "appsource", "INS", "contoso.offer"),
    ],
)
def test_combined_forms(lead_source: str, channel: str, action: str, offer_id: str) -> None:
    parsed = parse_lead_source(lead_source, None, None)
    assert (parsed.channel, parsed.action, parsed.offer_id) == (channel, action, offer_id)
    assert parsed.flags == ()


def test_bare_source_takes_action_and_title_from_their_own_fields() -> None:
    parsed = parse_lead_source("AzureMarketplace", "INS", "Contoso Analytics for Azure")
    assert (parsed.channel, parsed.action, parsed.offer_id, parsed.offer_title) == (
        "azure_marketplace",
        "INS",
        None,
        "Contoso Analytics for Azure",
    )


def test_action_inside_lead_source_wins_over_action_code() -> None:
    assert parse_lead_source("AzurePortal-Create|a.b", "INS", None).action == "Create"


def test_unknown_action_and_source_are_kept_verbatim_and_flagged() -> None:
    parsed = parse_lead_source("NewStorefront-FreeTrial|contoso.offer", None, None)
    assert parsed.channel == "NewStorefront"
    assert parsed.action == "FreeTrial"
    assert set(parsed.flags) == {"unknown_action", "unknown_source"}


def test_offer_name_instead_of_id_becomes_the_title() -> None:
    parsed = parse_lead_source(
        "MSFT_TEST_636573304831318844-MSFT_TEST_636573304831318844|Contoso SaaS Suite", None, None
    )
    assert parsed.channel == "test" and parsed.action == "test"
    assert parsed.offer_id is None and parsed.offer_title == "Contoso SaaS Suite"


def test_missing_lead_source_names_the_field_and_the_fix() -> None:
    with pytest.raises(MalformedLead) as err:
        parse_lead_source("  ", "INS", "Offer")
    assert err.value.field == "LeadSource"
    assert "LeadSource" in err.value.fix


def test_no_action_anywhere_is_flagged_not_rejected() -> None:
    parsed = parse_lead_source("AzureMarketplace", None, "Offer")
    assert parsed.action is None and "no_action" in parsed.flags


@pytest.mark.parametrize(
    "value",
    [
        "MSFT_TEST_636573304831318844@test.com",
        {"a": {"b": ["x", "msft_test_1"]}},
        ["MSFT_TEST_9"],
    ],
)
def test_test_marker_anywhere(value: object) -> None:
    assert contains_test_marker(value)


def test_no_test_marker() -> None:
    assert not contains_test_marker({"Email": "someone@contoso.com", "n": 1, "x": None})
