"""Field maps: canonical values, constants, transforms, placeholders, cutting long values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from leadbridge.core.domain.mapping import TRUNCATION_MARK, FieldMap, FieldSpec, canonical, truncate
from leadbridge.core.domain.models import Lead

LEAD = Lead(
    lead_key="k" * 32,
    offer_key="contoso.crm",
    email="a@x.io",
    first_name="Zoë",
    title="情報システム部 部長",
    attribution={"mktcmpid": "spring", "partnerid": "42"},
    first_seen=datetime(2026, 5, 1, 9, 30, tzinfo=UTC),
    actions=["PLT"],
)


def test_transforms() -> None:
    values = canonical(LEAD)
    specs = {
        "campaign": {"from": "attribution.mktcmpid"},
        "product": {"from": "offer", "map": {"contoso.crm": "CRM"}, "default": "Other"},
        "unmapped": {"from": "offer", "map": {"contoso.saas": "SaaS"}},
        "both": {"join": ["attribution.mktcmpid", "attribution.partnerid", "phone"], "with": " / "},
        "fallback": {"from": "company", "default": "Unknown Co"},
        "day": {"from": "first_seen", "date_format": "%d.%m.%Y"},
        "short": {"from": "title", "truncate": 4},
        "fixed": {"const": 8},
    }
    mapped = FieldMap({}).with_overrides(specs).apply(values, "[not provided]")
    assert mapped == {
        "campaign": "spring",
        "product": "CRM",
        "unmapped": "contoso.crm",
        "both": "spring / 42",
        "fallback": "Unknown Co",
        "day": "01.05.2026",
        "short": "情報シ" + TRUNCATION_MARK,
        "fixed": 8,
    }


def test_overrides_are_key_by_key_and_null_drops_a_built_in() -> None:
    built_in = FieldMap(
        {"FirstName": "first_name", "Description": "notes", "LeadSource": "=Web"},
        required=frozenset({"LastName"}),
        lengths={"FirstName": 2},
    )
    mapped = built_in.with_overrides(
        {"Description": None, "LeadSource": "=AppSource", "Email__c": "email"}
    ).apply(canonical(LEAD), "[none]")
    assert mapped == {
        "FirstName": "Z" + TRUNCATION_MARK,
        "LeadSource": "AppSource",
        "Email__c": "a@x.io",
        "LastName": "[none]",
    }


def test_cutting_multi_byte_text_keeps_whole_characters() -> None:
    text = "株式会社コントソ🙂ü"
    cut = truncate(text, 8)
    assert cut == "株式会社コント" + TRUNCATION_MARK and len(cut) == 8
    cut.encode("utf-8")  # never half a code point
    assert truncate("short", 10) == "short" and truncate(5, 1) == 5


def test_a_spec_names_exactly_one_source() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        FieldSpec.model_validate({"from": "email", "const": 1})
    with pytest.raises(ValidationError):
        FieldSpec.model_validate({"from": "email", "uppercase": True})


def test_docs_list_every_built_in_field_as_the_code_has_it() -> None:
    """docs/mapping.md's tables are the built-in maps; regenerate them if this fails."""
    from pathlib import Path

    from leadbridge.connectors.builtin_maps import built_in, table

    doc = (Path(__file__).resolve().parents[3] / "docs" / "mapping.md").read_text("utf-8")
    for kind in built_in():
        assert table(kind) in doc, f"docs/mapping.md is out of date for {kind}"
