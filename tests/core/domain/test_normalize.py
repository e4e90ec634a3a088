from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadbridge.core.domain import normalize


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


# --- hostile values: bounded, never an unexpected exception ----------------------------

DEEP_JSON = '{"a":' + "[" * 1000 + "]" * 1000 + "}"


def test_description_nested_a_thousand_deep_is_unreadable_not_a_recursion_error() -> None:
    with pytest.raises(normalize.Unreadable, match="nested more than"):
        normalize.description(DEEP_JSON)


def test_description_with_nested_attribution_within_the_bound_still_reads() -> None:
    assert normalize.description('{"utm": {"source": ["ads"]}}') == (
        None,
        {"utm": '{"source": ["ads"]}'},
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("x" * (normalize.MAX_FIELD_CHARS + 1), "more than"),
        ("Ada\ud800", "lone surrogate"),
        (["Ada"], "expected text"),
        ({"first": "Ada"}, "expected text"),
    ],
)
def test_readable_refuses_what_cannot_be_read_safely(value: object, reason: str) -> None:
    with pytest.raises(normalize.Unreadable, match=reason):
        normalize.readable(value)


def test_readable_cleans_what_it_accepts() -> None:
    assert normalize.readable("  A\x00da\x1b ") == "Ada"  # control characters removed
    assert normalize.readable(42) == "42"
    assert normalize.readable("line one\nline two") == "line one\nline two"
    assert normalize.readable(None) is None


def test_nesting_depth_is_measured_without_recursion() -> None:
    deep: object = "leaf"
    for _ in range(100_000):
        deep = [deep]
    assert normalize.nesting_depth(deep) == normalize.MAX_JSON_DEPTH + 1
    assert normalize.nesting_depth({"a": [{"b": 1}]}) == 3
    assert normalize.nesting_depth("flat") == 0


# --- one person, one identity: IDNA domains --------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "alice@bücher.de",
        "alice@xn--bcher-kva.de",  # the same domain in punycode
        "Alice@BÜCHER.DE",
        "alice@ｂücher.de",  # fullwidth b: IDNA maps it to b
        "alice@bu\u0308cher.de",  # decomposed ü
    ],
)
def test_an_international_domain_has_one_canonical_form(typed: str) -> None:
    assert normalize.email(typed) == ("alice@bücher.de", None)


def test_plain_ascii_addresses_are_unchanged_so_their_lead_keys_are() -> None:
    assert normalize.email("Jsmith@Contoso.com") == ("jsmith@contoso.com", None)


@pytest.mark.parametrize(
    ("typed", "lookalike"),
    [
        ("alice@аpple.com", True),  # Cyrillic а in a Latin label
        ("аlice@apple.com", True),  # Cyrillic а in a Latin local part
        ("ａlice@example.com", True),  # fullwidth a
        ("alice@ｂücher.de", True),  # fullwidth b, though IDNA folds it away
        ("\U0001d41alice@example.com", True),  # mathematical bold a
        ("alice@bücher.de", False),
        ("иван@пример.рф", False),  # one script per part
        ("ivan@пример.com", False),  # a Cyrillic label beside a Latin one
        ("山田たろう@example.jp", False),  # Han with kana: Japanese
        ("jsmith@contoso.com", False),
    ],
)
def test_lookalike_addresses(typed: str, lookalike: bool) -> None:
    normalized, problem = normalize.email(typed)
    assert problem is None
    assert normalize.lookalike_email(typed, normalized) is lookalike
