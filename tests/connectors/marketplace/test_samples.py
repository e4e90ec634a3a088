"""Every sample in shared/reference/sample-leads.json, both shapes, against its expected result."""

from __future__ import annotations

from typing import Any

import pytest

from leadbridge.connectors.marketplace import parse_payload

SHAPES = (("https", "https_payload"), ("table", "table_row"))


def _cases() -> list[tuple[str, str, str]]:
    return [(f"ml-{i:02d}", kind, key) for i in range(1, 13) for kind, key in SHAPES]


@pytest.mark.parametrize(("sample_id", "kind", "key"), _cases())
def test_sample_normalises_as_expected(
    samples: list[dict[str, Any]], sample_id: str, kind: str, key: str
) -> None:
    sample = next(s for s in samples if s["sample_id"] == sample_id)
    expected = sample["expected_normalized"]
    lead = parse_payload(kind, sample[key], None)

    assert lead.channel == expected["source"]
    assert lead.action == expected["action"]
    assert lead.is_test is expected["is_test"]
    assert lead.do_not_contact is expected["do_not_contact"]
    offer = expected.get("offer_id")
    if offer and "table row only" in offer:
        # ml-01: the HTTPS form carries only the display title; the table row has the id.
        assert lead.offer_id == (offer.split()[0] if kind == "table" else None)
        assert lead.offer_title == "Contoso Analytics for Azure"
    elif offer:
        assert lead.offer_id == offer
    for name in (
        "email",
        "country",
        "first_name",
        "last_name",
        "phone",
        "company",
        "title",
        "attribution",
    ):
        if name in expected:
            assert getattr(lead, name) == expected[name], name


def test_test_lead_is_detected_in_both_shapes(samples: list[dict[str, Any]]) -> None:
    sample = next(s for s in samples if s["sample_id"] == "ml-08")
    for kind, key in SHAPES:
        lead = parse_payload(kind, sample[key], None)
        assert lead.is_test and lead.channel == "test" and lead.action == "test"


def test_returning_customer_normalises_to_the_same_identity(samples: list[dict[str, Any]]) -> None:
    first = next(s for s in samples if s["sample_id"] == "ml-01")
    again = next(s for s in samples if s["sample_id"] == "ml-11")
    a = parse_payload("table", first["table_row"], None)
    b = parse_payload("table", again["table_row"], None)
    assert (a.email, a.offer_id, a.phone, a.country) == (b.email, b.offer_id, b.phone, b.country)
    assert b.first_name == "john"  # case kept as typed; merge prefers the better-formed value
