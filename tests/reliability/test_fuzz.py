"""Fuzzing (hypothesis): whatever a sender or a file throws at the parsers and the config
loader, no exception escapes but the ones that name a field and a fix, and every bad record
is quarantined with its reason while the rest of the batch goes on."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadbridge.connectors.marketplace import parse_payload
from leadbridge.connectors.marketplace.file import LeadsFileConfig, LeadsFileSource
from leadbridge.connectors.marketplace.leadsource import parse_lead_source
from leadbridge.core.connector import MalformedLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import ConfigError, load_settings
from leadbridge.core.store.repo import Store

text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
KEYS = [
    "LeadSource",
    "leadSource",
    "ActionCode",
    "OfferTitle",
    "Description",
    "UserDetails",
    "userDetails",
    "CustomerInfo",
    "OfferDisplayName",
]
CUSTOMER = ["FirstName", "LastName", "Email", "Phone", "Country", "Company", "Title"]
lead_sources = st.one_of(
    text,
    st.builds(
        lambda s, a, o: f"{s}-{a}|{o}",
        st.sampled_from(["AzureMarketplace", "AppSource (SPZA)", "SPZA", "TestDrive", "X-Y", ""]),
        text,
        text,
    ),
)
customer = st.dictionaries(st.sampled_from(CUSTOMER), st.one_of(text, scalars), max_size=7)
payloads = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "LeadSource": lead_sources,
            "ActionCode": st.one_of(text, scalars),
            "OfferTitle": text,
            "Description": st.one_of(text, json_values.map(json.dumps)),
            "UserDetails": st.one_of(customer, json_values),
            "CustomerInfo": st.one_of(customer.map(json.dumps), text, json_values),
        },
    ),
)


@settings(max_examples=300, deadline=None)
@given(payload=payloads, kind=st.sampled_from(["https", "table", "csv", "referral"]))
def test_no_exception_escapes_the_parsers(payload: Any, kind: str) -> None:
    try:
        parse_payload(kind, payload, None)
    except MalformedLead as exc:
        assert exc.field and exc.reason and exc.fix


@settings(max_examples=300, deadline=None)
@given(
    lead_source=st.one_of(st.none(), text, lead_sources),
    action=st.none() | text,
    title=st.none() | text,
)
def test_lead_source_strings(lead_source: Any, action: Any, title: Any) -> None:
    try:
        parsed = parse_lead_source(lead_source, action, title)
    except MalformedLead as exc:
        assert exc.field == "LeadSource"
    else:
        assert parsed.channel is not None


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(
        st.one_of(
            payloads.map(lambda p: json.dumps(p, default=str)),
            st.text(alphabet=string.printable, max_size=60),
        ),
        min_size=1,
        max_size=15,
    )
)
def test_every_bad_line_is_quarantined_and_the_rest_goes_on(
    tmp_path_factory: Any, lines: list[str]
) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    path = tmp / "leads.jsonl"
    path.write_text("\n".join(line.replace("\n", " ") for line in lines) + "\n", encoding="utf-8")
    settings_ = load_settings(None, store=f"sqlite:///{tmp / 'lb.db'}")
    store = Store(settings_.store)
    try:
        report = pipeline.ingest(
            LeadsFileSource(LeadsFileConfig(name="f", path=path)), store, settings_
        )
        with store.connect() as conn:
            statuses = [r.status for r in conn.exec_driver_sql("SELECT status FROM raw_leads")]
            reasons = [r.message for r in conn.exec_driver_sql("SELECT message FROM quarantine")]
        assert "new" not in statuses  # every landed record was processed or quarantined
        assert (
            statuses.count("quarantined")
            == len(reasons)
            == (report.quarantined + report.test_leads)
        )
        assert all(reasons)
    finally:
        store.dispose()


config_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "store",
                    "engine",
                    "http",
                    "port",
                    "sources",
                    "targets",
                    "name",
                    "kind",
                    "qualification",
                    "mql_at",
                    "batch_size",
                    "fields",
                    "routing",
                    "path",
                    "token",
                    "every",
                    "x",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=10,
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=config_values)
def test_the_config_loader_answers_with_problems_never_a_crash(
    tmp_path: Path, document: Any
) -> None:
    path = tmp_path / "lb.yaml"
    path.write_text(json.dumps(document), encoding="utf-8")  # JSON is YAML
    try:
        load_settings(path)
    except ConfigError as exc:
        assert exc.problems and all(p.key and p.fix for p in exc.problems)


@pytest.mark.parametrize("document", ["store: [", "- a\n- b\n", "\t bad: indent", "{{{"])
def test_broken_yaml_is_a_problem_too(tmp_path: Path, document: str) -> None:
    path = tmp_path / "lb.yaml"
    path.write_text(document, encoding="utf-8")
    with pytest.raises(ConfigError):
        load_settings(path)


referrals = st.fixed_dictionaries(
    {"id": st.one_of(text.filter(bool), st.integers())},
    optional={
        "customerProfile": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {},
                optional={
                    "name": st.one_of(text, json_values),
                    "address": json_values,
                    "team": st.one_of(
                        json_values, st.lists(st.one_of(customer, json_values), max_size=3)
                    ),
                },
            ),
        ),
        "consent": json_values,
        "details": json_values,
        "name": st.one_of(text, json_values),
        "createdDateTime": st.one_of(text, st.datetimes().map(lambda d: d.isoformat())),
    },
)


@settings(max_examples=300, deadline=None)
@given(referral=referrals)
def test_no_exception_escapes_the_referral_parser(referral: dict[str, Any]) -> None:
    try:
        parse_payload("referral", referral, None)
    except MalformedLead as exc:
        assert exc.field and exc.fix
