"""Partner Center referrals against the loopback Partner Center: delegated sign-in with a
persistent token cache, marketplace leads read from referrals, stage written back."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from responses import matchers
from sqlalchemy import text

from leadbridge.connectors.marketplace import parse_payload, referrals
from leadbridge.connectors.marketplace.referrals import (
    DelegatedToken,
    ReferralsConfig,
    ReferralsSource,
    ReferralsWriteBack,
    ReferralsWriteBackConfig,
    is_marketplace_lead,
)
from leadbridge.connectors.marketplace.sandbox import ReferralsSandbox
from leadbridge.core.connector import FatalError, RetryableError
from leadbridge.core.domain.models import Lead, RawLead, Stage
from leadbridge.core.ingest.pipeline import ingest
from leadbridge.core.settings import load_settings
from leadbridge.core.store import state
from leadbridge.core.store.repo import Store

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
    with pytest.raises(FatalError, match="auth sign-in"):
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


# --- reading every page, and the cursor ---------------------------------------------------

API = "https://api.partner.microsoft.com/v1.0/engagements/referrals"


class _Token:
    """Stands in for the delegated token in the contract tests (no sign-in to fake)."""

    verify = True

    def __init__(self, config: ReferralsConfig) -> None:
        self.config = config

    def headers(self, force_refresh: bool) -> Mapping[str, str]:
        return {"Authorization": "Bearer t"}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ReferralsSource:
    monkeypatch.setattr(referrals, "DelegatedToken", _Token)
    return ReferralsSource(
        ReferralsConfig(name="referrals", client_id="app", token_cache=tmp_path / "cache.json")
    )


def _referral(number: int, updated: str, **extra: Any) -> dict[str, Any]:
    """A marketplace lead as a referral, in the shape of the response example of
    https://learn.microsoft.com/partner-center/developer/get-a-list-of-referrals."""
    return {
        "id": f"c5fbb3b6-be74-4795-9fb5-4324c73fed{number:02d}",
        "engagementId": "65edc0b5-3485-41b7-a17e-dfa9ef4706e2",
        "organizationId": "7d23e5ca-19dc-4eaa-aac8-5e6b559f0d1d",
        "organizationName": "Contoso Company",
        "createdDateTime": updated,
        "updatedDateTime": updated,
        "status": "New",
        "substatus": "Pending",
        "qualification": "Direct",
        "type": "Independent",
        "direction": "Incoming",
        "customerProfile": {"name": "Fabrikam Customer Inc", "address": {"country": "US"}},
        **extra,
    }


def _page(*items: dict[str, Any], next_token: str | None = None) -> dict[str, Any]:
    """A list answer as in the same page's example: `value`, and `@odata.nextLink` carrying
    `$skiptoken` — verbatim, plain http and without `/engagements`."""
    body: dict[str, Any] = {
        "@odata.context": "http://api.partner.microsoft.com/v1.0/$metadata#Referrals",
        "value": list(items),
    }
    if next_token:
        body["@odata.nextLink"] = (
            f"http://api.partner.microsoft.com/v1.0/referrals?$skiptoken={next_token}"
        )
    return body


def _listed(call: responses.Call) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


@responses.activate
def test_every_page_is_read_through_the_next_link_on_the_configured_endpoint(
    offline: ReferralsSource,
) -> None:
    first = matchers.query_param_matcher(
        {"$filter": "updatedDateTime ge 2000-01-01T00:00:00Z", "$orderby": "updatedDateTime asc"}
    )
    responses.get(
        API,
        json=_page(
            _referral(1, "2026-10-30T21:03:00.0000000Z"), next_token="k181pEdP0ykypkieJfcxX"
        ),
        match=[first],
    )
    second = matchers.query_param_matcher({"$skiptoken": "k181pEdP0ykypkieJfcxX"})
    responses.get(API, json=_page(_referral(2, "2026-10-30T22:00:00Z")), match=[second])

    pairs = list(offline.fetch(None))

    assert [raw.source_key[-2:] for raw, _ in pairs] == ["01", "02"]
    assert [cursor for _, cursor in pairs] == [
        "2026-10-30T21:03:00+00:00",
        "2026-10-30T22:00:00+00:00",
    ]
    assert len(responses.calls) == 2  # the whole listing, and only to the configured endpoint
    assert responses.calls[1].request.url == f"{API}?$skiptoken=k181pEdP0ykypkieJfcxX"
    assert "$top" not in _listed(responses.calls[0])  # OData: $top caps the whole result
    assert responses.calls[0].request.headers["Prefer"] == "odata.maxpagesize=100"


@responses.activate
def test_a_next_link_that_repeats_stops_the_read_instead_of_looping(
    offline: ReferralsSource,
) -> None:
    responses.get(API, json=_page(_referral(1, "2026-10-30T21:03:00Z"), next_token="same"))
    pairs = []
    with pytest.raises(RetryableError, match="nextLink"):
        for pair in offline.fetch(None):
            pairs.append(pair)
    assert len(responses.calls) == 2  # the page, then its link once
    # what was yielded before the error carries a cursor covering only itself
    assert {cursor for _, cursor in pairs} <= {"2026-10-30T21:03:00+00:00"}


@responses.activate
def test_a_refused_filter_falls_back_to_newest_first_down_to_the_watermark(
    offline: ReferralsSource,
) -> None:
    """The 400 has Partner Center's error shape
    (https://learn.microsoft.com/partner-center/developer/error-codes); its text is invented:
    the refusal of this filter is not documented either way."""
    responses.get(
        API,
        status=400,
        json={
            "code": "400",
            "description": "Invalid filter: updatedDateTime is not supported in $filter.",
            "data": [],
            "source": "PartnerCenter",
        },
        match=[
            matchers.query_param_matcher(
                {"$filter": "updatedDateTime ge 2026-10-30T11:50:00Z"}, strict_match=False
            )
        ],
    )
    newest_first = matchers.query_param_matcher({"$orderby": "updatedDateTime desc"})
    responses.get(
        API,
        json=_page(
            _referral(5, "2026-10-30T15:00:00Z"),
            _referral(4, "2026-10-30T14:00:00Z", qualification="SalesQualified"),  # not ours
            next_token="p2",
        ),
        match=[newest_first],
    )
    responses.get(
        API,
        json=_page(
            _referral(3, "2026-10-30T12:05:00Z"),  # inside the overlap: read again
            _referral(2, "2026-10-30T11:00:00Z"),  # older than watermark - overlap: stop
            _referral(1, "2026-10-30T10:00:00Z"),
            next_token="p3",
        ),
        match=[matchers.query_param_matcher({"$skiptoken": "p2"})],
    )
    page3 = responses.get(
        API, json=_page(), match=[matchers.query_param_matcher({"$skiptoken": "p3"})]
    )

    watermark = "2026-10-30T12:00:00+00:00"
    pairs = list(offline.fetch(watermark))

    assert [raw.source_key[-2:] for raw, _ in pairs] == ["05", "03"]
    # Newest first: the cursor moves only with the last, once everything newer is yielded.
    assert [cursor for _, cursor in pairs] == [watermark, "2026-10-30T15:00:00+00:00"]
    assert page3.call_count == 0  # nothing older than the watermark is read
    assert "$filter" not in _listed(responses.calls[1])

    list(offline.fetch("2026-10-30T15:00:00+00:00"))  # the refusal is remembered
    assert "$filter" not in _listed(responses.calls[-2])


@pytest.fixture
def signed_in(config: ReferralsConfig) -> ReferralsConfig:
    return _signed_in(config).model_copy(update={"page_size": 2, "overlap": timedelta(0)})


def _add_marketplace_leads(pc: ReferralsSandbox, count: int, **extra: Any) -> list[str]:
    ids = []
    for number in range(count):
        ids.append(pc.add({"name": f"lead {number}", "customerProfile": PERSON, **extra})["id"])
        pc.add({"name": "co-sell", "qualification": "SalesQualified"})  # read, not landed
    return ids


@pytest.mark.parametrize("refused", [False, True], ids=["filtered", "filter-refused"])
def test_every_page_is_read_with_an_opaque_skiptoken(
    signed_in: ReferralsConfig, pc: ReferralsSandbox, refused: bool
) -> None:
    pc.refuse_updated_filter = refused
    ids = _add_marketplace_leads(pc, 5)
    landed = [raw.source_key for raw, _ in ReferralsSource(signed_in).fetch(None)]
    assert sorted(landed) == sorted(ids)
    tokens = [q["$skiptoken"] for q in pc.list_queries if "$skiptoken" in q]
    assert len(tokens) == 4  # 10 referrals, 2 a page: 5 pages
    assert all(set(q) == {"$skiptoken"} for q in pc.list_queries if "$skiptoken" in q)
    assert not any(token.isdigit() for token in tokens)  # opaque, not an offset


def test_when_the_filter_is_refused_the_read_stops_at_the_watermark(
    signed_in: ReferralsConfig, pc: ReferralsSandbox
) -> None:
    pc.refuse_updated_filter = True
    long_ago = datetime.now(UTC) - timedelta(days=3)
    old = [  # four referrals from three days ago, an hour apart, the newest last
        pc.add(
            {
                "name": "old",
                "customerProfile": PERSON,
                "updatedDateTime": (long_ago - timedelta(hours=hours)).isoformat(),
            }
        )["id"]
        for hours in (4, 3, 2, 1)
    ]
    source = ReferralsSource(signed_in.model_copy(update={"overlap": timedelta(minutes=10)}))
    *_, (_, cursor) = source.fetch(None)
    new = [pc.add({"name": "new", "customerProfile": PERSON})["id"] for _ in range(3)]
    pc.list_queries.clear()

    pairs = list(source.fetch(cursor))

    # newest first, down to the watermark minus the overlap: the newest old one is read again
    assert [raw.source_key for raw, _ in pairs] == [*reversed(new), old[-1]]
    assert [c for _, c in pairs[:-1]] == [cursor] * 3  # held until the end
    assert datetime.fromisoformat(pairs[-1][1]) > datetime.fromisoformat(cursor)
    assert len(pc.list_queries) == 3  # [new, new] [new, old] [old: stop]; page 4 unread


@pytest.mark.parametrize("refused", [False, True], ids=["filtered", "filter-refused"])
def test_a_crash_after_any_landed_batch_loses_no_referral(
    signed_in: ReferralsConfig, pc: ReferralsSandbox, tmp_path: Path, refused: bool
) -> None:
    """The pipeline lands raw leads and the cursor of the last one together; the process
    dies after k of them. With no overlap to hide a cursor that ran ahead, the next run
    must still land every referral — and each once."""
    pc.refuse_updated_filter = refused
    ids = _add_marketplace_leads(pc, 3)
    settings = load_settings(None, store=f"sqlite:///{tmp_path / 'lb.db'}", batch_size=1)
    for crash_after in range(len(ids) + 1):
        store = Store(f"sqlite:///{tmp_path / f'lb{crash_after}.db'}")
        with pytest.raises(RuntimeError):
            ingest(_Dying(ReferralsSource(signed_in), crash_after), store, settings)
        if crash_after == 1:  # new referrals arrive between the crash and the restart
            ids += _add_marketplace_leads(pc, 2)
        ingest(ReferralsSource(signed_in), store, settings)
        with store.connect() as conn:
            landed = conn.execute(text("SELECT source_key FROM raw_leads")).scalars().all()
            cursor = conn.execute(
                text("SELECT value FROM cursors WHERE name = :n"),
                {"n": state.source_cursor("referrals").name},
            ).scalar_one()
        store.dispose()
        assert sorted(landed) == sorted(ids), crash_after
        newest = max(r["updatedDateTime"] for r in pc.records.values())
        assert datetime.fromisoformat(cursor) == datetime.fromisoformat(newest)


class _Dying:
    """The source, as seen by a process that dies after `after` raw leads."""

    def __init__(self, source: ReferralsSource, after: int) -> None:
        self.source, self.after, self.name = source, after, source.name

    def fetch(self, cursor: str | None) -> Iterator[tuple[RawLead, str]]:
        yield from itertools.islice(self.source.fetch(cursor), self.after)
        raise RuntimeError("the process dies here")
