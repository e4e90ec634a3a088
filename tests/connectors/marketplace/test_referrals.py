"""Partner Center referrals against the loopback Partner Center: delegated sign-in with a
persistent token cache, marketplace leads read from referrals, stage written back."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leadbridge.connectors.base import FatalError
from leadbridge.connectors.marketplace import parse_payload
from leadbridge.connectors.marketplace.referrals import (
    DelegatedToken,
    ReferralsConfig,
    ReferralsSource,
    ReferralsWriteBack,
    ReferralsWriteBackConfig,
    is_marketplace_lead,
)
from leadbridge.connectors.marketplace.sandbox import ReferralsSandbox
from leadbridge.core.models import Lead, Stage

PERSON = {
    "name": "Northwind",
    "address": {"country": "USA"},
    "team": [
        {
            "firstName": "Priya",
            "lastName": "Raman",
            "email": "Priya@Northwind.example",
            "phoneNumber": "425 555 0134",
        }
    ],
}


@pytest.fixture
def pc() -> Iterator[ReferralsSandbox]:
    with ReferralsSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def config(pc: ReferralsSandbox, tmp_path: Path) -> ReferralsConfig:
    return ReferralsConfig(
        name="referrals",
        client_id=pc.client_id,
        authority=pc.authority,
        api_url=pc.api_url,
        token_cache=tmp_path / "cache.json",
        ca_bundle=pc.ca_file,
    )


def _signed_in(config: ReferralsConfig) -> ReferralsConfig:
    DelegatedToken(config).sign_in(lambda message: None)
    return config


def test_device_code_sign_in_keeps_a_private_cache_that_survives_restarts(
    config: ReferralsConfig,
    pc: ReferralsSandbox,
) -> None:
    with pytest.raises(FatalError, match="auth partner-center"):
        DelegatedToken(config).headers(False)  # not signed in yet: the fix is named
    shown: list[str] = []
    who = DelegatedToken(config).sign_in(shown.append)
    assert "LEADBRDG" in shown[0] and who == "referrals.admin@contoso.example"
    assert os.stat(config.token_cache).st_mode & 0o777 == 0o600
    restarted = DelegatedToken(config)  # a new process: only the cache file carries over
    issued = pc.tokens_issued
    assert restarted.headers(True)["Authorization"].startswith("Bearer ")
    assert pc.tokens_issued == issued + 1  # renewed silently with the cached refresh token


def test_a_symlink_planted_at_the_old_partial_path_gets_no_token(
    config: ReferralsConfig,
) -> None:
    """The cache used to be written through `<cache>.partial` opened without O_EXCL: a link
    planted there sent the refresh token to a file of the attacker's choosing."""
    stolen = config.token_cache.parent / "attacker-owned"
    stolen.write_text("", encoding="utf-8")
    config.token_cache.with_suffix(".partial").symlink_to(stolen)
    _signed_in(config)
    assert stolen.read_text(encoding="utf-8") == ""  # the token went nowhere else
    assert not config.token_cache.is_symlink()
    assert json.loads(config.token_cache.read_text(encoding="utf-8"))["RefreshToken"]
    assert os.stat(config.token_cache).st_mode & 0o777 == 0o600
    leftovers = {p.name for p in config.token_cache.parent.iterdir()}
    assert leftovers == {"cache.json", "cache.partial", "attacker-owned"}  # no temp file left


def test_a_token_cache_that_is_a_symlink_is_refused_for_reading_and_writing(
    config: ReferralsConfig,
) -> None:
    elsewhere = config.token_cache.parent / "someone-elses-cache.json"
    elsewhere.write_text("{}", encoding="utf-8")
    config.token_cache.symlink_to(elsewhere)
    with pytest.raises(FatalError, match="symbolic link"):
        DelegatedToken(config)  # not read: it could hand us another account

    config.token_cache.unlink()
    token = DelegatedToken(config)  # no cache yet: fine
    config.token_cache.symlink_to(elsewhere)  # planted before the first save
    with pytest.raises(FatalError, match="symbolic link"):
        token.sign_in(lambda message: None)
    assert elsewhere.read_text(encoding="utf-8") == "{}"  # no token written through it
    assert config.token_cache.is_symlink()  # refused, not silently replaced


def test_marketplace_leads_are_read_and_mapped(
    config: ReferralsConfig, pc: ReferralsSandbox
) -> None:
    lead = pc.add(
        {
            "name": "Contoso CRM Add-in",
            "customerProfile": PERSON,
            "details": {"notes": "Call after 2pm"},
        }
    )
    pc.add(
        {
            "name": "co-sell",
            "qualification": "SalesQualified",
            "inviteContext": {"invitedBy": {"organizationId": "partner-7"}},
        }
    )
    pc.add({"name": "No thanks", "customerProfile": PERSON, "consent": {"consentToContact": False}})
    source = ReferralsSource(_signed_in(config))
    raws = [raw for raw, _ in source.fetch(None)]
    assert len(raws) == 2  # the co-sell opportunity is not a marketplace lead
    parsed = parse_payload("referral", raws[0].payload, None)
    assert (parsed.email, parsed.first_name, parsed.company, parsed.country, parsed.phone) == (
        "priya@northwind.example",
        "Priya",
        "Northwind",
        "US",
        "+14255550134",
    )
    assert parsed.notes == "Call after 2pm" and parsed.channel == "partner_center"
    assert parsed.attribution == {"partner_center_referral": lead["id"]}
    assert parse_payload("referral", raws[1].payload, None).do_not_contact  # no consent


def test_marketplace_lead_test_follows_the_reference() -> None:
    assert is_marketplace_lead({"type": "Independent", "qualification": "Direct"})
    assert is_marketplace_lead(
        {
            "type": "Independent",
            "qualification": "Direct",
            "inviteContext": {"invitedBy": {"organizationId": "msft"}},
        }
    )
    assert not is_marketplace_lead({"type": "Shared", "qualification": "Direct"})


def _write_back(config: ReferralsConfig) -> ReferralsWriteBack:
    return ReferralsWriteBack(
        ReferralsWriteBackConfig(
            **{**_signed_in(config).model_dump(), "kind": "partner_center_writeback"}
        )
    )


def _lead(referral: dict[str, Any], stage: Stage) -> Lead:
    return Lead(
        lead_key="a" * 32,
        offer_key="o",
        stage=stage,
        attribution={"partner_center_referral": referral["id"]},
    )


def test_sql_becomes_active_accepted_even_after_losing_a_race(
    config: ReferralsConfig, pc: ReferralsSandbox
) -> None:
    referral = pc.add({"name": "x", "customerProfile": PERSON})
    target = _write_back(config)
    pc.conflict_next = 1  # someone saves the referral just before our PATCH: 412
    [result] = target.upsert([_lead(referral, Stage.SQL)])
    assert result.ok
    stored = pc.records[referral["id"]]
    assert (stored["status"], stored["substatus"]) == ("Active", "Accepted")
    assert stored["externalReferenceId"] == "a" * 32
    patches = [r for r in pc.request_log if r["method"] == "PATCH"]
    assert [p["status"] for p in patches] == [412, 204]


def test_stages_partner_center_cant_show_are_not_written(
    config: ReferralsConfig, pc: ReferralsSandbox
) -> None:
    referral = pc.add(
        {"name": "x", "customerProfile": PERSON, "status": "Closed", "substatus": "Won"}
    )
    target = _write_back(config)
    assert target.upsert([_lead(referral, Stage.MQL)])[0].ok  # nothing to say yet
    assert target.upsert([_lead(referral, Stage.SQL)])[0].ok  # Closed can't go back
    assert not [r for r in pc.request_log if r["method"] == "PATCH"]
    assert pc.records[referral["id"]]["status"] == "Closed"
