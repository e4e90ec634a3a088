"""The HubSpot target against its sandbox: opaque search cursors through the 10,000 cap,
HubSpot's 423/477/52x answers on demand (nothing dead-lettered that a retry would land, the
"contact support" ones stop the target), and the properties API `config check --online`
uses."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from sqlalchemy import func, select

from leadbridge.connectors.hubspot import target as hubspot
from leadbridge.connectors.hubspot.sandbox import HubSpotSandbox
from leadbridge.connectors.hubspot.target import HubSpotConfig, HubSpotTarget
from leadbridge.core.app.synthetic import write_jsonl
from leadbridge.core.connector import build, sandboxes
from leadbridge.core.delivery.deliver import deliver
from leadbridge.core.domain.models import Lead, Stage
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import Settings, load_settings
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import dead_letters, outbox
from tests.clihelp import EXIT_USAGE, run_cli


@pytest.fixture
def box() -> Iterator[HubSpotSandbox]:
    with HubSpotSandbox() as sandbox:
        yield sandbox


def _target(box: HubSpotSandbox) -> HubSpotTarget:
    return HubSpotTarget(HubSpotConfig(name="marketing", base_url=box.url, token=box.token))


def _lead(i: int) -> Lead:
    return Lead(
        lead_key=f"{i:032x}",
        offer_key="contoso.crm",
        email=f"person{i}@contoso.com",
        stage=Stage.LEAD,
    )


def test_search_pages_with_opaque_cursors_through_the_cap(
    box: HubSpotSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox's cursors are base64, as HubSpot's look: arithmetic on them fails there as
    it would in production. Seven contacts through a cap of four: every one is read."""
    target = _target(box)
    assert all(r.ok for r in target.upsert([_lead(i) for i in range(1, 8)]))
    monkeypatch.setattr(hubspot, "SEARCH_PAGE", 2)
    monkeypatch.setattr(hubspot, "SEARCH_CAP", 4)
    box.search_cap = 4
    changes, _ = target.stage_changes(None)
    assert sorted(c.lead_key for c in changes) == [f"{i:032x}" for i in range(1, 8)]
    searches = [e for e in box.request_log if e["path"].endswith("/search")]
    assert all(e["status"] == 200 for e in searches)
    cursors = [json.loads(e["body"]).get("after") for e in searches]
    assert any(c and not str(c).isdigit() for c in cursors)  # opaque, sent back as given


def _post(box: HubSpotSandbox, accept: str = "*/*") -> requests.Response:
    return requests.post(
        f"{box.url}/crm/v3/objects/contacts/batch/read",
        json={"idProperty": "email", "inputs": [{"id": "a@contoso.com"}]},
        headers={"Authorization": f"Bearer {box.token}", "Accept": accept},
        timeout=10,
    )


def test_injected_faults_come_in_hubspots_and_cloudflares_shapes(box: HubSpotSandbox) -> None:
    box.faults.retry_after_s = 3
    box.set_faults({423: 1.0})
    locked = _post(box)
    assert locked.status_code == 423 and "Retry-After" not in locked.headers
    assert locked.json()["status"] == "error" and locked.json()["correlationId"]
    box.set_faults({477: 1.0})
    assert _post(box).headers["Retry-After"] == "3"  # "HubSpot will return a Retry-After"
    box.set_faults({522: 1.0})
    page = _post(box)
    assert page.headers["Content-Type"] == "text/html" and "522: Connection timed out" in page.text
    box.set_faults({524: 1.0})
    problem = _post(box, accept="application/json")
    assert problem.headers["Retry-After"] == "3"
    assert problem.json()["error_category"] == "origin" and problem.json()["status"] == 524
    box.set_faults({526: 1.0})
    tls = _post(box, accept="application/json")
    assert "Retry-After" not in tls.headers and tls.json()["error_category"] == "ssl"
    box.set_faults({})
    assert _post(box).status_code == 207  # unknown email: OBJECT_NOT_FOUND


@pytest.fixture
def world(tmp_path: Path, box: HubSpotSandbox) -> Iterator[tuple[Settings, Store, Any]]:
    leads_file = tmp_path / "leads.jsonl"
    write_jsonl(leads_file, 40, returning=0.0)
    settings = load_settings(
        None,
        store=f"sqlite:///{tmp_path / 'lb.db'}",
        sources=[{"name": "f", "kind": "leads_file", "path": str(leads_file)}],
        targets=[sandboxes.target_entry("hubspot", box) | {"batch_size": 10}],
        delivery={"retry_base": "0.1s", "retry_max": "0.2s"},
    )
    store = Store(settings.store)
    pipeline.ingest(build(settings.source("f")), store, settings)
    target = build(settings.target_configs()[0], placeholder=settings.placeholder)
    try:
        yield settings, store, target
    finally:
        store.dispose()


def _count(store: Store, table: Any) -> int:
    with store.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_a_faulty_portal_loses_and_dead_letters_nothing(
    box: HubSpotSandbox, world: tuple[Settings, Store, Any], fake_clock: Any
) -> None:
    """423, 477 and the retryable 52x on a third of the requests: every lead lands, once."""
    settings, store, target = world
    box.faults.retry_after_s = 0.1
    box.set_faults({423: 0.1, 477: 0.05, 502: 0.05, 521: 0.05, 523: 0.05, 524: 0.05})
    deadline = time.monotonic() + 60
    while _count(store, outbox) and time.monotonic() < deadline:
        deliver(target, store, settings)
        fake_clock.sleep(5)  # a vendor's pause ends on the transport's (fake) clock
        time.sleep(0.05)  # and a back-off on the store's wall clock
    statuses = {e["status"] for e in box.request_log}
    assert statuses & {423, 477, 502, 521, 523, 524}, "no fault was injected"
    assert _count(store, outbox) == 0 and _count(store, dead_letters) == 0
    keys = [r["leadbridge_lead_key"] for r in box.records.values()]
    assert len(keys) == len(set(keys)) == 40


def test_contact_support_stops_the_target_and_keeps_every_lead_queued(
    box: HubSpotSandbox, world: tuple[Settings, Store, Any]
) -> None:
    settings, store, target = world
    box.set_faults({525: 1.0})
    report = deliver(target, store, settings)
    assert report.fatal and "HubSpot support" in report.fatal
    assert report.pushed == 0 and _count(store, outbox) == 40
    assert _count(store, dead_letters) == 0 and len(box.request_log) == 1
    box.set_faults({})
    assert deliver(target, store, settings).pushed == 40


def _check_online(tmp_path: Path, box: HubSpotSandbox) -> list[str | Path]:
    """Write a config pointing at the sandbox; the `config check --online` command line."""
    path = tmp_path / "lb.yaml"
    config = {
        "store": f"sqlite:///{tmp_path / 'lb.db'}",
        "targets": [sandboxes.target_entry("hubspot", box)],
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return ["--config", path, "config", "check", "--online"]


def test_config_check_online_creates_missing_properties_in_the_sandbox(
    tmp_path: Path, box: HubSpotSandbox
) -> None:
    check = _check_online(tmp_path, box)
    ok = run_cli(check)
    assert "marketing: no schema problem(s)" in ok.output, ok.output
    box.properties.discard("leadbridge_offers")  # a portal leadbridge hasn't set up yet
    missing = run_cli(check, expect=EXIT_USAGE)
    assert "the contact property leadbridge_offers does not exist" in missing.output
    created = run_cli([*check, "--create-missing"])
    assert "created the contact property leadbridge_offers" in created.output
    assert box.definitions["leadbridge_offers"]["type"] == "string"
    assert _target(box).upsert([_lead(1)])[0].ok  # the portal now takes the property


def test_the_properties_api_refuses_what_hubspot_refuses(box: HubSpotSandbox) -> None:
    url, auth = f"{box.url}/crm/v3/properties/contacts", {"Authorization": f"Bearer {box.token}"}
    taken = {
        "name": "email",
        "label": "Email",
        "type": "string",
        "fieldType": "text",
        "groupName": "contactinformation",
    }
    assert requests.post(url, json=taken, headers=auth, timeout=10).status_code == 409
    assert requests.post(url, json={"name": "x"}, headers=auth, timeout=10).status_code == 400
    assert requests.get(url, timeout=10).status_code == 401
    listed = requests.get(url, headers=auth, timeout=10).json()["results"]
    stage = next(p for p in listed if p["name"] == "lifecyclestage")
    assert stage["type"] == "enumeration"
    assert {"marketingqualifiedlead", "customer"} <= {o["value"] for o in stage["options"]}
