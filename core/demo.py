"""`leadbridge demo`: the sample marketplace leads through the whole pipeline into local
sandboxes of every CRM, no credentials needed.

Runs with config/demo.yaml against a throwaway SQLite store (or `--workdir`) and the
sandboxes of `leadbridge sandbox`, started in-process on loopback — so it exercises exactly
the code and configuration path a real deployment does.
"""

from __future__ import annotations

import os
import tempfile
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import requests

from leadbridge.connectors import sandboxes
from leadbridge.connectors.base import build
from leadbridge.core import logs, render, views
from leadbridge.core.delivery import deliver
from leadbridge.core.logs import mask_email
from leadbridge.core.pipeline import ingest
from leadbridge.core.settings import Settings, load_settings
from leadbridge.core.stagesync import pull_stages
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store

# What the demo shows of each CRM's records: (name, email, stage) columns per kind.
_SHOW = {
    "salesforce": ("LastName", "Email", "Lead_Stage__c"),
    "hubspot": ("lastname", "email", "lifecyclestage"),
    "dataverse": ("lastname", "emailaddress1", "lb_leadstage"),
    "webhook": ("last_name", "email", "stage"),
}


def run_demo(workdir: Path | None = None) -> int:
    out = render.console
    running = sandboxes.start()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="leadbridge-demo-") as tmp,
            as_file(files("leadbridge.config")) as data_dir,
        ):
            settings = _settings(Path(workdir or tmp), Path(data_dir), running)
            store = Store(settings.store)
            out.rule("leadbridge demo: marketplace leads → one lead per person and offer → CRMs")
            _ingest(settings, store)
            _deliver(settings, store)
            _show_crms(running)
            _show_again(settings, store)
            _accept_in_salesforce(settings, store, running)
            store.dispose()
    finally:
        sandboxes.stop(running)
    return 0


def _settings(work: Path, data_dir: Path, running: dict[str, Any]) -> Settings:
    work.mkdir(parents=True, exist_ok=True)
    os.environ["LEADBRIDGE_DEMO_DIR"] = str(work.resolve())
    os.environ["LEADBRIDGE_DEMO_DATA"] = str(data_dir.resolve())
    for kind, sandbox in running.items():
        os.environ[f"LEADBRIDGE_DEMO_{kind.upper()}_URL"] = sandbox.url
    os.environ["LEADBRIDGE_DEMO_DATAVERSE_CA"] = str(running["dataverse"].ca_file)
    settings = load_settings(data_dir / "demo.yaml")
    logs.setup(settings.log_format, "WARNING")  # the demo's output is what follows
    return settings


def _ingest(settings: Settings, store: Store) -> None:
    for config in settings.source_configs():
        report = ingest(build(config), store, settings)
        render.console.print(
            f"{config.name}: {report.fetched} raw leads → {report.leads_created} new leads, "
            f"{report.leads_updated} merged into existing ones, {report.new_mqls} new MQLs, "
            f"{report.test_leads} Microsoft test lead(s), {report.quarantined} quarantined"
        )
    with store.connect() as conn:
        rows = views.list_leads(conn)
        quarantined = views.list_quarantine(conn)
    render.emit_table(
        [views.masked_row(r) for r in rows],
        ("email", "first_name", "last_name", "offer_key", "stage", "score", "actions"),
        title=f"{len(rows)} unique leads",
    )
    render.emit_table(
        quarantined, ("raw_lead_id", "reason", "message"), title="kept in landing, never delivered"
    )


def _deliver(settings: Settings, store: Store) -> None:
    for config in settings.target_configs():
        report = deliver(build(config, placeholder=settings.placeholder), store, settings)
        render.console.print(
            f"→ {config.name} ({config.kind}): {report.pushed} leads upserted "
            f"in {report.api_calls} API call(s)"
        )


def _show_crms(running: dict[str, Any]) -> None:
    for kind, sandbox in running.items():
        name, email, stage = _SHOW[kind]
        rows = [
            {"name": r.get(name), "email": mask_email(r.get(email)), "stage": r.get(stage)}
            for r in sandbox.records.values()
        ]
        render.emit_table(
            rows, ("name", "email", "stage"), title=f"{kind} sandbox now holds {len(rows)} records"
        )


def _accept_in_salesforce(settings: Settings, store: Store, running: dict[str, Any]) -> None:
    """The other half: a salesperson accepts an MQL in Salesforce; one sync later every other
    CRM shows it, and the lead's history says who did it."""
    crm = running["salesforce"]
    key, record = next((k, r) for k, r in crm.records.items() if r.get("Lead_Stage__c") == "MQL")
    # The salesperson's click, through the sandbox's admin API.
    requests.post(
        f"{crm.url}/_sandbox/stage", json={"key": key, "value": "SQL"}, timeout=10
    ).raise_for_status()
    targets = [build(c, placeholder=settings.placeholder) for c in settings.target_configs()]
    report = pull_stages(targets, store, settings)
    for target in targets:
        deliver(target, store, settings)
    email = record["Email"]
    render.console.print(
        f"A salesperson sets {mask_email(email)} to SQL in Salesforce. One stage sync "
        f"({report.applied} change accepted) later: HubSpot shows "
        f"{running['hubspot'].records[email]['lifecyclestage']}, Dynamics "
        f"{running['dataverse'].records[key]['lb_leadstage']} (SQL), the webhook "
        f"{running['webhook'].records[key]['stage']}."
    )
    with store.connect() as conn:
        history = views.lead_story(conn, views.find_leads(conn, key)[0])["history"]
    for event in (e for e in history if e["kind"] == "stage"):
        data = event["data"]
        render.console.print(
            f"  stage {data['from']} → {data['to']} by {event['actor']}: {data['reason']}"
        )


def _show_again(settings: Settings, store: Store) -> None:
    calls = 0
    with store.begin() as conn:
        keys = [row["lead_key"] for row in views.list_leads(conn)]
        repo.enqueue(conn, keys, [t.name for t in settings.targets], repo.utcnow())
    for config in settings.target_configs():
        calls += deliver(build(config, placeholder=settings.placeholder), store, settings).api_calls
    render.console.print(
        f"Delivering every lead again: {calls} API calls — nothing changed, "
        "so nothing was sent. Every write is an upsert on the lead key, so even "
        "a re-send could not create a duplicate."
    )
