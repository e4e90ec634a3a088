from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from leadbridge.core.domain import identity
from leadbridge.core.domain.models import MarketplaceLead

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


def test_keys_are_the_uuid5_every_crm_record_was_written_with() -> None:
    """The hand-rolled uuid5 equals the standard library's, for every kind of name: keys
    already written into CRMs must never change."""
    names = ["a@b.com|contoso.app", "person|ü@bücher.de", "company|contoso|", "", "x" * 500]
    for name in names:
        assert identity.uuid5_hex(name) == uuid.uuid5(identity.LEADBRIDGE_NS, name).hex
    expected = uuid.uuid5(identity.LEADBRIDGE_NS, "a@b.com|contoso.app").hex
    assert identity.lead_key("a@b.com", "contoso.app") == expected


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


def _offer_lead(offer: str, at: datetime, **fields: object):
    """A lead of jsmith@contoso.com for `offer`, last seen at `at`, with these fields."""
    lead = identity.new_lead(offer, offer, _parsed(offer_id=offer), at)
    identity.merge(lead, _parsed(offer_id=offer, **fields), at)
    return lead


def test_a_person_holds_the_best_of_all_their_leads() -> None:
    older = _offer_lead(
        "c.a", T0, first_name="john", phone="+11234567890", title="Developer", country="US"
    )
    newer = _offer_lead(
        "c.b", T0 + timedelta(days=3), first_name="John", phone="123 456", title="CTO"
    )
    person = identity.person_of([newer, older])
    # Better-formed wins whichever lead has it; between equals the more recent lead wins;
    # a gap on one lead is no reason to forget what the other knows.
    assert person.fields == {
        "first_name": "John",
        "phone": "+11234567890",
        "title": "CTO",
        "country": "US",
    }
    assert person.last_seen == T0 + timedelta(days=3)


def test_adopt_fills_a_lead_from_its_person_and_never_empties_or_worsens_it() -> None:
    lead = _offer_lead("c.a", T0, first_name="John", company="Contoso", title="Developer")
    person = identity.Person(
        {"first_name": "john", "phone": "+11234567890", "title": "CTO"}, T0 + timedelta(days=1)
    )
    changes = identity.adopt(lead, person)
    assert set(changes) == {"phone", "title"}
    assert (lead.first_name, lead.company, lead.phone, lead.title) == (
        "John",  # "john" is worse-formed: the lead keeps its own
        "Contoso",  # the person doesn't know it: never emptied
        "+11234567890",
        "CTO",
    )
    assert identity.adopt(lead, person) == {}


def test_merge_with_a_person_judges_newer_by_the_persons_newest_action() -> None:
    """A late-arriving old action on one offer doesn't undo what the person said since on
    another offer; the lead takes the person's current values."""
    sibling = _offer_lead("c.b", T0 + timedelta(days=5), title="CTO")
    person = identity.person_of([sibling])
    lead = identity.new_lead("c.a", "c.a", _parsed(offer_id="c.a"), T0)
    changes = identity.merge(lead, _parsed(offer_id="c.a", title="Intern", phone="555"), T0, person)
    assert (lead.title, lead.phone) == ("CTO", "555")
    assert person.fields == {"title": "CTO", "phone": "555"}
    assert set(changes) >= {"title", "phone"}
    later = T0 + timedelta(days=6)
    identity.merge(lead, _parsed(offer_id="c.a", title="Head of IT"), later, person)
    assert lead.title == person.fields["title"] == "Head of IT"
    assert person.last_seen == later


def test_person_keys_are_hex_and_carry_no_address() -> None:
    key = identity.person_key("jsmith@contoso.com")
    assert re.fullmatch(r"[0-9a-f]{32}", key) and key != identity.person_key("j@contoso.com")
    assert key != identity.lead_key("jsmith@contoso.com", "person")
