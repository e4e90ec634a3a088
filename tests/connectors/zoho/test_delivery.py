"""Zoho CRM through the real delivery job, against its sandbox: the API budget for new
leads, and the do-no-harm property — for any sequence of marketplace actions, deliveries and
edits people make in Zoho, no opt-out goes from true to false and no non-empty `if_empty`
value changes. (tests/connectors/test_write_policy_property.py lists its CRMs by hand; this is
the same property for Zoho until it reads them from the registry.)"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadbridge.connectors.zoho.sandbox import ZohoSandbox
from leadbridge.connectors.zoho.target import ZohoTarget
from leadbridge.core.app.synthetic import write_jsonl
from leadbridge.core.connector import build
from leadbridge.core.delivery.deliver import deliver
from leadbridge.core.domain.mapping import WritePolicy
from leadbridge.core.domain.models import RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import load_settings
from leadbridge.core.store.repo import Store

PEOPLE = ["ada@contoso.com", "bob@fabrikam.com"]
TEXT = st.sampled_from(["", "Contoso", "Fabrikam Ltd", "CTO", "+1 425 555 0100", "Doe", "DE"])


@pytest.fixture(scope="module")
def box() -> Iterator[ZohoSandbox]:
    with ZohoSandbox() as sandbox:
        yield sandbox  # type: ignore[misc]


def test_a_thousand_new_leads_cost_at_most_twenty_calls(tmp_path: Path, box: ZohoSandbox) -> None:
    leads_file = tmp_path / "leads.jsonl"
    unique = write_jsonl(leads_file, 1_000, returning=0.0)
    settings = load_settings(
        None,
        store=f"sqlite:///{tmp_path / 'lb.db'}",
        sources=[{"name": "f", "kind": "leads_file", "path": str(leads_file)}],
        targets=[ZohoTarget.sandbox_entry(box, "zoho") | {"rate": 1000.0}],
    )
    store = Store(settings.store)
    try:
        pipeline.ingest(build(settings.source("f")), store, settings)
        report = deliver(build(settings.target("zoho"), placeholder="[none]"), store, settings)
    finally:
        store.dispose()
    assert report.pushed == unique >= 950  # a few synthetic leads are quarantined
    assert report.api_calls <= 20 * unique / 1_000
    assert len(box.records) == unique


action = st.tuples(
    st.just("action"),
    st.sampled_from(PEOPLE),
    st.sampled_from(["INS", "PLT", "DNC", "Create", "StartTestDrive"]),
    st.fixed_dictionaries(
        {"Company": TEXT, "Title": TEXT, "Phone": TEXT, "LastName": TEXT, "Country": TEXT}
    ),
)
edit = st.tuples(st.just("edit"), st.sampled_from(PEOPLE), st.integers(0, 20), TEXT)
opt_out = st.tuples(st.just("opt_out"), st.sampled_from(PEOPLE))
steps = st.lists(st.one_of(action, edit, opt_out, st.just(("deliver",))), min_size=1, max_size=12)


@pytest.fixture(scope="module")
def world(box: ZohoSandbox) -> Iterator[tuple[ZohoSandbox, Any, dict[str, Any]]]:
    """One target for every example: Zoho mints ten access tokens in ten minutes, no more."""
    with tempfile.TemporaryDirectory() as folder:
        entry = ZohoTarget.sandbox_entry(box, "zoho")
        config = load_settings(None, store=f"sqlite:///{Path(folder) / 'x.db'}", targets=[entry])
        yield box, build(config.target_configs()[0], placeholder=config.placeholder), entry


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps)
def test_no_opt_out_is_cleared_and_no_persons_value_is_replaced(
    world: tuple[ZohoSandbox, Any, dict[str, Any]], plan: list[tuple[Any, ...]]
) -> None:
    box, target, entry = world
    with box.lock:
        box.records.clear()
    guarded = target.fields.read_fields()
    assert all(target.fields.policy(f) is WritePolicy.IF_EMPTY for f in guarded)
    with tempfile.TemporaryDirectory() as folder:
        config = load_settings(None, store=f"sqlite:///{Path(folder) / 'lb.db'}", targets=[entry])
        store = Store(config.store)
        try:
            for n, step in enumerate(plan):
                _run(step, n, box, config, store, target, guarded)
            _deliver_and_check(box, config, store, target, guarded)
        finally:
            store.dispose()


def _run(
    step: tuple[Any, ...],
    n: int,
    box: ZohoSandbox,
    config: Any,
    store: Store,
    target: Any,
    guarded: list[str],
) -> None:
    if step[0] == "action":
        _, email, code, customer = step
        payload = {
            "LeadSource": f"AppSource (SPZA)-{code}|contoso.crm",
            "UserDetails": {"Email": email, **{k: v for k, v in customer.items() if v}},
        }
        pipeline.land_one(
            store, RawLead(source="t", source_key=f"{n}", kind="https", payload=payload)
        )
        pipeline.process_pending(store, config)
    elif step[0] == "deliver":
        _deliver_and_check(box, config, store, target, guarded)
    else:
        record = _record(box, step[1])
        if record is None:
            return
        with box.lock:
            if step[0] == "opt_out":  # the person unsubscribed in Zoho
                record.update({name: True for name in target.fields.consent})
            else:  # a salesperson typed into (or cleared) one of the person's fields
                record[guarded[step[2] % len(guarded)]] = step[3] or None


def _deliver_and_check(
    box: ZohoSandbox, config: Any, store: Store, target: Any, guarded: list[str]
) -> None:
    before = {email: dict(_record(box, email) or {}) for email in PEOPLE}
    deliver(target, store, config)
    for email, old in before.items():
        if not old:
            continue
        new = _record(box, email) or {}
        for name in target.fields.consent:
            if old.get(name) is True:
                assert new.get(name) is True, f"{name} went from true to {new.get(name)!r}"
        for name in guarded:
            value = old.get(name)
            if value not in (None, "", config.placeholder):
                assert new.get(name) == value, f"{name}: {value!r} became {new.get(name)!r}"


def _record(box: ZohoSandbox, email: str) -> dict[str, Any] | None:
    with box.lock:
        return next((r for r in box.records.values() if r.get("Email") == email), None)
