"""The do-no-harm property, against each CRM sandbox through the real delivery job: for any
sequence of marketplace actions, deliveries and edits people make in the CRM, no opt-out
ever goes from true to false and no non-empty value of an `if_empty` field ever changes."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadbridge.core.connector import build, sandboxes
from leadbridge.core.delivery.deliver import deliver
from leadbridge.core.domain.mapping import WritePolicy
from leadbridge.core.domain.models import RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import load_settings
from leadbridge.core.store.repo import Store

# Every installed CRM people work in (leadbridge reads its records before writing them),
# from the registry: a new connector runs this too.
CRMS = [k for k in sandboxes.kinds() if sandboxes.sandboxed_kinds()[k].reads_per_batch > 0]
PEOPLE = ["ada@contoso.com", "bob@fabrikam.com"]


def _field(target: Any, canonical: str) -> str:
    return next(
        str(name)
        for name, source in target.fields.fields.items()
        if source == canonical or getattr(source, "from_", None) == canonical
    )


TEXT = st.sampled_from(["", "Contoso", "Fabrikam Ltd", "CTO", "+1 425 555 0100", "Doe", "DE"])

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


@pytest.fixture(scope="module", params=CRMS)
def crm(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    running = sandboxes.start([request.param])
    yield request.param, running[request.param]
    sandboxes.stop(running)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps)
def test_no_opt_out_is_cleared_and_no_persons_value_is_replaced(
    crm: tuple[str, Any], plan: list[tuple[Any, ...]]
) -> None:
    kind, sandbox = crm
    with sandbox.lock:
        sandbox.records.clear()
    with tempfile.TemporaryDirectory() as folder:
        entry = sandboxes.target_entry(kind, sandbox)
        config = load_settings(None, store=f"sqlite:///{Path(folder) / 'lb.db'}", targets=[entry])
        store = Store(config.store)
        target = build(config.target_configs()[0], placeholder=config.placeholder)
        guarded = target.fields.read_fields()
        assert all(target.fields.policy(f) is WritePolicy.IF_EMPTY for f in guarded)
        try:
            for n, step in enumerate(plan):
                _run(step, n, sandbox, config, store, target, guarded)
            _deliver_and_check(sandbox, config, store, target, guarded)
        finally:
            store.dispose()


def _run(
    step: tuple[Any, ...],
    n: int,
    sandbox: Any,
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
        raw = RawLead(source="t", source_key=f"{n}", kind="https", payload=payload)
        pipeline.land_one(store, raw)
        pipeline.process_pending(store, config)
    elif step[0] == "deliver":
        _deliver_and_check(sandbox, config, store, target, guarded)
    else:
        record = _record(target, sandbox, step[1])
        if record is None:
            return
        with sandbox.lock:
            if step[0] == "opt_out":  # the person unsubscribed in the CRM
                record.update({name: True for name in target.fields.consent})
            else:  # a salesperson typed into (or cleared) one of the person's fields
                record[guarded[step[2] % len(guarded)]] = step[3] or None


def _deliver_and_check(
    sandbox: Any, config: Any, store: Store, target: Any, guarded: list[str]
) -> None:
    before = {email: dict(_record(target, sandbox, email) or {}) for email in PEOPLE}
    deliver(target, store, config)
    for email, old in before.items():
        if not old:
            continue
        new = _record(target, sandbox, email) or {}
        for name in target.fields.consent:
            if old.get(name) is True:
                assert new.get(name) is True, f"{name} went from true to {new.get(name)!r}"
        for name in guarded:
            value = old.get(name)
            if value not in (None, "", config.placeholder):
                assert new.get(name) == value, f"{name}: {value!r} became {new.get(name)!r}"


def _record(target: Any, sandbox: Any, email: str) -> dict[str, Any] | None:
    field = _field(target, "email")
    with sandbox.lock:
        return next((r for r in sandbox.records.values() if r.get(field) == email), None)
