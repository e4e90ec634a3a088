from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from leadbridge.core import identity
from leadbridge.core.models import MarketplaceLead

T0 = datetime(2024, 5, 14, 9, 0, tzinfo=UTC)


def _parsed(**fields: object) -> MarketplaceLead:
    base = {
        "email": "jsmith@contoso.com",
        "offer_id": "contoso.analytics",
        "action": "INS",
        "channel": "azure_marketplace",
    }
    return MarketplaceLead(**(base | fields))


def test_lead_key_is_deterministic_hex_and_per_offer() -> None:
    key = identity.lead_key("jsmith@contoso.com", "contoso.analytics")
    assert re.fullmatch(r"[0-9a-f]{32}", key)
    assert key == identity.lead_key("jsmith@contoso.com", "contoso.analytics")
    assert key != identity.lead_key("jsmith@contoso.com", "contoso.other")
    # Pinned: changing the namespace or the formula would orphan every CRM record written.
    assert key == "a38dad24866651e0974673be1388f6d1"


def test_offer_key_prefers_id_then_alias_then_title() -> None:
    assert identity.offer_key(_parsed(), {}) == "contoso.analytics"
    title_only = _parsed(offer_id=None, offer_title="Contoso  Analytics")
    assert identity.offer_key(title_only, {}) == "title:contoso analytics"
    assert identity.offer_key(title_only, {"contoso analytics": "contoso.analytics"}) == (
        "contoso.analytics"
    )
    assert identity.offer_key(_parsed(offer_id=None), {}) == "unknown"


def _lead_from(parsed: MarketplaceLead, at: datetime = T0):
    lead = identity.new_lead("k", "contoso.analytics", parsed, at)
    identity.merge(lead, parsed, at)
    return lead


def test_merge_fills_gaps_and_never_empties() -> None:
    lead = _lead_from(_parsed(first_name="John", phone=None, company="Contoso"))
    changes = identity.merge(
        lead, _parsed(first_name=None, phone="+11234567890", company=None), T0 + timedelta(days=1)
    )
    assert (lead.first_name, lead.phone, lead.company) == ("John", "+11234567890", "Contoso")
    assert set(changes) == {"phone"}


def test_merge_prefers_better_formed_values_even_when_newer() -> None:
    lead = _lead_from(
        _parsed(first_name="John", last_name="Smith", phone="+11234567890", country="US")
    )
    identity.merge(
        lead,
        _parsed(first_name="john", last_name="SMITH", phone="123 456", country="Atlantis"),
        T0 + timedelta(days=1),
    )
    assert (lead.first_name, lead.last_name, lead.phone, lead.country) == (
        "John",
        "Smith",
        "+11234567890",
        "US",
    )


def test_merge_takes_the_newer_of_equally_good_values_and_ignores_older_ones() -> None:
    lead = _lead_from(_parsed(title="CTO", company="Contoso Ltd"))
    identity.merge(
        lead,
        _parsed(title="Chief Technology Officer", company="Contoso Ltd."),
        T0 + timedelta(days=1),
    )
    identity.merge(lead, _parsed(title="Intern", company="Old Name"), T0 - timedelta(days=30))
    assert (lead.title, lead.company) == ("Chief Technology Officer", "Contoso Ltd.")
    assert lead.first_action == "INS" and lead.first_seen == T0 - timedelta(days=30)


def test_actions_history_and_first_touch_attribution() -> None:
    lead = _lead_from(_parsed(attribution={"mktcmpid": "spring"}))
    identity.merge(
        lead,
        _parsed(action="Create", attribution={"mktcmpid": "fall", "partnerid": "1"}),
        T0 + timedelta(hours=1),
    )
    assert lead.actions == ["INS", "Create"]
    assert lead.last_action == "Create" and lead.raw_count == 2
    assert lead.attribution == {"mktcmpid": "spring", "partnerid": "1"}


def test_do_not_contact_until_the_customer_acts_on_the_offer_directly() -> None:
    lead = _lead_from(_parsed(action="DNC"))
    assert lead.do_not_contact
    identity.merge(lead, _parsed(action="DNC"), T0 + timedelta(hours=1))
    assert lead.do_not_contact
    identity.merge(lead, _parsed(action="PLT"), T0 + timedelta(hours=2))
    assert not lead.do_not_contact


def test_orphan_keys_are_per_raw_lead() -> None:
    assert identity.orphan_key("s", "1") != identity.orphan_key("s", "2")
