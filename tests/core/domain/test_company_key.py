"""The company key: one account per company however its people type its name."""

from __future__ import annotations

import pytest

from leadbridge.core.domain.identity import company_key, company_name_key, mail_domain


@pytest.mark.parametrize(
    "typed",
    ["Contoso Ltd", "CONTOSO LTD.", "Contoso, Ltd", "contoso", "Contoso Limited", " Contoso  Inc "],
)
def test_legal_form_case_and_punctuation_do_not_split_a_company(typed: str) -> None:
    assert company_name_key(typed) == "contoso"
    assert company_key(typed, "ann@contoso.com") == company_key("Contoso", "bob@CONTOSO.com")


def test_the_employers_domain_is_part_of_the_key_a_personal_mailbox_is_not() -> None:
    assert mail_domain("ann@gmail.com") is None and mail_domain("x@yahoo.co.uk") is None
    assert mail_domain("ann@Contoso.com") == "contoso.com"
    # Two firms of one name at different domains stay apart: never matched by name alone.
    assert company_key("Contoso", "a@contoso.com") != company_key("Contoso", "a@contoso.de")
    # A personal mailbox says nothing about the employer: the name decides.
    assert company_key("Contoso", "a@gmail.com") == company_key("Contoso", "b@outlook.com")
    assert company_key("Contoso", "a@gmail.com") != company_key("Contoso", "a@contoso.com")


def test_no_name_no_key_and_a_name_of_only_a_legal_form_is_kept() -> None:
    assert company_key(None, "a@contoso.com") is None
    assert company_key("  ,. ", "a@contoso.com") is None
    assert company_name_key("Ltd") == "ltd"  # nothing else to go by: not emptied
    key = company_key("Contoso", "a@contoso.com")
    assert key is not None and len(key) == 32 and int(key, 16) >= 0  # hex: alternate-key safe


def test_names_in_other_scripts_and_widths_normalise() -> None:
    assert company_name_key("Ｃｏｎｔｏｓｏ　ＧｍｂＨ") == "contoso"  # NFKC: full-width forms
    assert company_name_key("株式会社コントソ") == "株式会社コントソ"
