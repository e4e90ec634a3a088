"""`leadbridge demo`: the sample marketplace leads through the whole pipeline into local
sandboxes of every CRM, no credentials needed.

Runs with config/demo.yaml against a SQLite store in `--workdir` (else a new temporary
folder, kept so the commands it suggests at the end work) and the sandboxes of
`leadbridge sandbox` — every installed connector that has one — started in-process on
loopback, so it exercises exactly the code and configuration path a real deployment does.

Every run starts fresh: the sandboxes live in memory and start empty, so a store kept from
an earlier run would believe they already hold every lead (the same payloads, so no API
call) and the demo would tell a different story — nothing delivered, no MQL to accept. The
demo therefore removes its own store from the workdir before it starts, and only its own: a
folder holding a store the demo did not make is refused.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import yaml

from leadbridge.core.app import render, views
from leadbridge.core.connector import Sandboxed, build, connector_class, sandboxes
from leadbridge.core.delivery.deliver import deliver
from leadbridge.core.ingest.pipeline import ingest
from leadbridge.core.settings import Settings, load_settings
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store
from leadbridge.core.support import logs
from leadbridge.core.support.logs import mask_email
from leadbridge.core.sync.stagesync import pull_stages

EXIT_USAGE = 2
# The files a demo run makes in its workdir (SQLite's journals next to the store).
STORE_FILE = "leadbridge.db"
CONFIG_FILE = "leadbridge.yaml"
_MARKER = ".leadbridge-demo"
_OWN_FILES = (STORE_FILE, f"{STORE_FILE}-wal", f"{STORE_FILE}-shm", f"{STORE_FILE}-journal")


def run_demo(workdir: Path | None = None) -> int:
    out = render.console
    work = _fresh_workdir(workdir)
    if work is None:
        return EXIT_USAGE
    running = sandboxes.start()
    try:
        with as_file(files("leadbridge.config")) as data_dir:
            settings = _settings(work, Path(data_dir), running)
            store = Store(settings.store)
            try:
                out.rule(
                    "leadbridge demo: marketplace leads → one lead per person and offer → CRMs"
                )
                _ingest(settings, store)
                _deliver(settings, store)
                _show_crms(settings, running)
                _show_again(settings, store)
                accepted = _accept_in_a_sales_crm(settings, store, running)
            finally:
                store.dispose()
            config = _write_config(work, Path(data_dir))
    finally:
        sandboxes.stop(running)
    _what_next(work, config, accepted)
    return 0


def _fresh_workdir(workdir: Path | None) -> Path | None:
    """The folder this run keeps its store in, without an earlier run's store (see the
    module docstring); None when `workdir` holds a store the demo did not make."""
    if workdir is None:
        work = Path(tempfile.mkdtemp(prefix="leadbridge-demo-"))
    else:
        work = workdir.resolve()
        work.mkdir(parents=True, exist_ok=True)
    foreign = (
        [name for name in (STORE_FILE, CONFIG_FILE) if (work / name).exists()]
        if not (work / _MARKER).exists()
        else []
    )
    if foreign:
        render.console.print(
            f"{work} already holds {' and '.join(foreign)} that leadbridge demo did not make; "
            "the demo writes its own store and config there and will not replace yours. "
            "Give --workdir an empty folder (or the folder of an earlier demo)."
        )
        return None
    for name in _OWN_FILES:
        (work / name).unlink(missing_ok=True)
    (work / _MARKER).write_text(
        "made by `leadbridge demo`: its store here is replaced on every run\n", encoding="utf-8"
    )
    return work


def _settings(work: Path, data_dir: Path, running: dict[str, Any]) -> Settings:
    """config/demo.yaml, with one target per running sandbox (its own credentials)."""
    os.environ["LEADBRIDGE_DEMO_DIR"] = str(work)
    os.environ["LEADBRIDGE_DEMO_DATA"] = str(data_dir.resolve())
    targets = [sandboxes.target_entry(kind, sandbox) for kind, sandbox in running.items()]
    settings = load_settings(data_dir / "demo.yaml", targets=targets)
    logs.setup(settings.log_format, "WARNING")  # the demo's output is what follows
    return settings


def _ingest(settings: Settings, store: Store) -> None:
    for config in settings.source_configs():
        report = ingest(build(config), store, settings)
        line = views.ingest_line(report, settings.test_leads, fetched=report.fetched)
        render.console.print(f"{config.name}: {line}")
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


def _sandbox_of(config: Any, running: dict[str, Any]) -> tuple[type[Sandboxed], Any] | None:
    cls = connector_class(config.kind)
    if config.kind in running and isinstance(cls, type) and issubclass(cls, Sandboxed):
        return cls, running[config.kind]
    return None


def _show_crms(settings: Settings, running: dict[str, Any]) -> None:
    for config in settings.target_configs():
        found = _sandbox_of(config, running)
        if found is None:
            continue
        cls, sandbox = found
        rows = [
            {"name": r.name, "email": mask_email(r.email), "stage": r.stage}
            for r in cls.sandbox_records(sandbox, config)
        ]
        render.emit_table(
            rows,
            ("name", "email", "stage"),
            title=f"{config.name} ({config.kind}) sandbox now holds {len(rows)} records",
        )
        for line in cls.sandbox_people(sandbox, config):
            render.console.print(f"{config.name}: {line}")


def _accept_in_a_sales_crm(settings: Settings, store: Store, running: dict[str, Any]) -> str | None:
    """The other half: a salesperson accepts an MQL in a CRM that owns SQL; one sync later
    every other CRM shows it, and the lead's history says who did it. Returns the accepted
    lead's key."""
    targets = [build(c, placeholder=settings.placeholder) for c in settings.target_configs()]
    with store.connect() as conn:
        mqls = views.list_leads(conn, stage="mql")
    sales = next((t for t in targets if "sql" in t.policy().owns and t.policy().pulls), None)
    found = _sandbox_of(sales.config, running) if sales is not None else None
    if not mqls or sales is None or found is None:
        render.console.print("No MQL or no sales CRM to accept it: the stage sync step is skipped.")
        return None
    cls, sandbox = found
    lead = mqls[0]
    if not cls.move_stage(sandbox, sales.config, lead["lead_key"], "sql"):
        render.console.print(f"The {sales.config.kind} sandbox can't move a stage: skipped.")
        return None
    report = pull_stages(targets, store, settings)
    for target in targets:
        deliver(target, store, settings)
    render.console.print(
        f"A salesperson sets {mask_email(lead['email'])} to SQL in {sales.name} "
        f"({sales.config.kind}). One stage sync ({report.applied} change accepted) later: "
        + "; ".join(_stage_everywhere(settings, running, lead["email"], skip=sales.name))
        + "."
    )
    with store.connect() as conn:
        history = views.lead_story(conn, views.find_leads(conn, lead["lead_key"])[0])["history"]
    for event in (e for e in history if e["kind"] == "stage"):
        data = event["data"]
        render.console.print(
            f"  stage {data['from']} → {data['to']} by {event['actor']}: {data['reason']}"
        )
    return str(lead["lead_key"])


def _stage_everywhere(
    settings: Settings, running: dict[str, Any], email: str, skip: str
) -> list[str]:
    """What each other CRM shows for the person now."""
    shown = []
    for config in settings.target_configs():
        found = _sandbox_of(config, running)
        if config.name == skip or found is None:
            continue
        cls, sandbox = found
        stages = [r.stage for r in cls.sandbox_records(sandbox, config) if r.email == email]
        shown.append(f"{config.name} ({config.kind}) shows {stages[0] if stages else 'nothing'}")
    return shown


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


def _write_config(work: Path, data_dir: Path) -> Path:
    """The demo's configuration as a file the commands after the demo can use: its store
    and sources. Its targets were the sandboxes, gone when the demo ends, so they are left
    out (`leadbridge sandbox` starts them again and prints their `targets:` block)."""
    text = (data_dir / "demo.yaml").read_text(encoding="utf-8")
    config = yaml.safe_load(
        text.replace("${LEADBRIDGE_DEMO_DIR}", str(work)).replace(
            "${LEADBRIDGE_DEMO_DATA}", str(data_dir.resolve())
        )
    )
    config.pop("targets", None)
    path = work / CONFIG_FILE
    path.write_text(
        "# Written by `leadbridge demo`: the store and sources of its last run (replaced on\n"
        "# the next). The CRMs were its sandboxes, stopped when it ended; to deliver again,\n"
        "# run `leadbridge sandbox --targets-out targets.yaml` and add that block here.\n"
        + yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
    return path


def _what_next(work: Path, config: Path, lead_key: str | None) -> None:
    """The commands to try next, runnable as printed: the store and config stay in `work`."""
    base = f"leadbridge --config {shlex.quote(str(config))}"
    page = shlex.quote(str(work / "funnel.html"))
    steps = [
        (f"{base} leads list", "every lead, as in the table above"),
        *(
            [(f"{base} leads show {lead_key}", "the accepted lead: score, history, CRM links")]
            if lead_key
            else []
        ),
        (f"{base} leads quarantine", "the raw leads kept out, with the reason and the fix"),
        (
            f"{base} report funnel",
            "the funnel; the Contact-me leads are open: their follow-up window just began",
        ),
        (f"{base} report funnel --format html --output {page}", "the same as one web page"),
        (f"{base} status", "sources, landing, leads by stage"),
        ("leadbridge sandbox", "the CRM sandboxes on their own, with a targets: block"),
    ]
    render.console.print(f"\nWhat to try next (the demo's store and config are in {work}):")
    for command, what in steps:
        render.console.print(f"  {command}\n      {what}")
