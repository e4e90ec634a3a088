from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadbridge.core import normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  JSmith@Contoso.com ", "jsmith@contoso.com"),
        ("ZOE@Example.DE", "zoe@example.de"),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_email(raw: str | None, expected: str | None) -> None:
    assert normalize.email(raw)[0] == expected


def test_email_nfc() -> None:
    decomposed = "zoe\u0301@example.com"  # e + combining acute
    assert normalize.email(decomposed)[0] == "zo\u00e9@example.com"


def test_invalid_email_says_why() -> None:
    value, problem = normalize.email("jsmith at contoso")
    assert value is None and problem


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("US", "US"),
        ("usa", "US"),
        ("USA", "US"),
        ("United States", "US"),
        ("United States of America", "US"),
        ("DEU", "DE"),
        ("Germany", "DE"),
        ("gb", "GB"),
        ("UK", "GB"),
        ("TUR", "TR"),
        ("Atlantis", "Atlantis"),
        ("", None),
        (None, None),
    ],
)
def test_country(raw: str | None, expected: str | None) -> None:
    assert normalize.country(raw) == expected


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("1234567890", "US", "+11234567890"),
        ("+1 (123) 456-7890", "US", "+11234567890"),
        ("16175555555", "US", "+16175555555"),
        ("+351 912 345 678", "PT", "+351912345678"),
        ("030 1234567", "DE", "+49301234567"),
        ("030 1234567", None, "030 1234567"),  # no country to read a national number with
        ("call me", "US", "call me"),
        ("12", "US", "12"),
        ("", "US", None),
    ],
)
def test_phone(raw: str, region: str | None, expected: str | None) -> None:
    assert normalize.phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "notes", "attribution"),
    [
        ("", None, {}),
        (" ", None, {}),
        ("Campaigns: ", None, {}),
        ("Campaigns: spring,fall", None, {"campaigns": "spring,fall"}),
        (
            '{"mktcmpid":"spring","partnerid":98765}',
            None,
            {"mktcmpid": "spring", "partnerid": "98765"},
        ),
        ("{not json", "{not json", {}),
        ("Please call after 2pm", "Please call after 2pm", {}),
    ],
)
def test_description(raw: str, notes: str | None, attribution: dict[str, str]) -> None:
    assert normalize.description(raw) == (notes, attribution)


def test_text_keeps_case_and_normalises_unicode() -> None:
    assert normalize.text("  Ødegård\u0301 ") == "Ødegård\u0301".replace("d\u0301", "d\u0301")
    assert normalize.text("  McDONALD ") == "McDONALD"


def test_offer_title_key() -> None:
    assert normalize.offer_title_key("  Contoso   Analytics ") == "contoso analytics"


@settings(max_examples=400, deadline=None)
@given(st.emails() | st.text(alphabet='abcAB.-_+@é1 "', max_size=40))
def test_fast_path_agrees_with_email_validator(candidate: str) -> None:
    """The plain-address shortcut must never accept what email-validator would refuse."""
    from email_validator import EmailNotValidError, validate_email

    ours, _ = normalize.email(candidate)
    try:
        validate_email(candidate.strip().lower(), check_deliverability=False, test_environment=True)
        theirs = True
    except EmailNotValidError:
        theirs = False
    if ours is not None:
        assert theirs, candidate
