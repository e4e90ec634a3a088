"""The `leadbridge` command (typer). Exit codes: 0 success; 1 the job finished but something
needs attention (quarantined malformed leads, dead letters); 2 usage or configuration error.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from leadbridge.connectors.base import build
from leadbridge.core import logs, render, views
from leadbridge.core.pipeline import IngestReport, ingest
from leadbridge.core.settings import CONFIG_ENV, ConfigError, Settings, load_settings
from leadbridge.core.store import migrate
from leadbridge.core.store.repo import Store
from rich.progress import Progress, SpinnerColumn, TextColumn

EXIT_ATTENTION = 1
EXIT_USAGE = 2

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Microsoft marketplace leads into your CRMs, deduplicated and stage-synced.",
)
leads_app = typer.Typer(no_args_is_help=True, help="Look at leads and quarantined raw leads.")
config_app = typer.Typer(no_args_is_help=True, help="Validate or print the configuration.")
db_app = typer.Typer(no_args_is_help=True, help="Store maintenance.")
app.add_typer(leads_app, name="leads")
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
log = logging.getLogger("leadbridge.cli")


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class ShowFormat(StrEnum):
    table = "table"
    json = "json"


@dataclass
class Context:
    config_path: Path | None
    log_format: str | None = None
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self.config_path)
            except ConfigError as exc:
                _print_problems(exc)
                raise typer.Exit(EXIT_USAGE) from None
            logs.setup(self.log_format or self._settings.log_format, self._settings.log_level)
        return self._settings

    def store(self) -> Store:
        return Store(self.settings.store)


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar=CONFIG_ENV, help="YAML config file.", show_default=False),
]


@app.callback()
def main_callback(
    ctx: typer.Context,
    config: ConfigOption = None,
    log_format: Annotated[
        str | None, typer.Option("--log-format", help="json (default) or text.")
    ] = None,
) -> None:
    if log_format not in (None, "json", "text"):
        raise typer.BadParameter("use json or text", param_hint="--log-format")
    ctx.obj = Context(config, log_format)
    logs.setup(log_format or "json", "INFO")


def _ctx(ctx: typer.Context) -> Context:
    return ctx.obj


def _print_problems(exc: ConfigError) -> None:
    render.console.print(f"configuration has {len(exc.problems)} problem(s):")
    for problem in exc.problems:
        render.console.print(f"  {problem.key}: {problem.message}\n      fix: {problem.fix}")


# --- ingest ----------------------------------------------------------------------------


@app.command("ingest")
def ingest_command(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(help="Poll only this source.")] = None,
) -> None:
    """Poll the configured sources once: land new raw leads, then merge them into leads."""
    settings = _ctx(ctx).settings
    configs = settings.source_configs()
    if source:
        configs = [c for c in configs if c.name == source]
        if not configs:
            _usage(
                f"no source named {source!r}; configured: "
                f"{', '.join(s.name for s in settings.sources) or 'none'}"
            )
    store = _ctx(ctx).store()
    total = IngestReport()
    for config in configs:
        report = _run_ingest(build(config), store, settings)
        total.add(report)
        total.fetched += report.fetched
    _print_ingest(total)
    if total.needs_attention:
        raise typer.Exit(EXIT_ATTENTION)


def _run_ingest(src: Any, store: Store, settings: Settings) -> IngestReport:
    if not sys.stderr.isatty():
        return ingest(src, store, settings)
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), transient=True, console=render.console
    ) as progress:
        task = progress.add_task(f"ingesting {src.name}")

        def update(report: IngestReport) -> None:
            progress.update(
                task,
                description=f"ingesting {src.name}: {report.fetched} fetched, "
                f"{report.processed} processed",
            )

        return ingest(src, store, settings, on_batch=update)


def _print_ingest(report: IngestReport) -> None:
    render.console.print(
        f"fetched {report.fetched} raw leads, processed {report.processed}: "
        f"{report.leads_created} new leads, {report.leads_updated} updated, "
        f"{report.new_mqls} new MQLs, {report.test_leads} test leads, "
        f"{report.quarantined} quarantined"
    )
    for problem in report.problems[:20]:
        render.console.print(f"  quarantined {problem}")
    if report.quarantined:
        render.console.print("  see them with: leadbridge leads quarantine")


# --- leads -----------------------------------------------------------------------------

_LIST_COLUMNS = (
    "lead_key",
    "email",
    "first_name",
    "last_name",
    "company",
    "offer_key",
    "stage",
    "score",
    "actions",
    "flags",
)


@leads_app.command("list")
def leads_list(
    ctx: typer.Context,
    stage: Annotated[str | None, typer.Option(help="Only this stage (lead, mql, sql, …).")] = None,
    offer: Annotated[str | None, typer.Option(help="Only this offer key.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many.")] = None,
    format: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
) -> None:
    """List leads, oldest first."""
    with _ctx(ctx).store().connect() as conn:
        rows = views.list_leads(conn, stage, offer, limit)
    if format is Format.json:
        render.emit_json(rows)
    elif format is Format.csv:
        render.emit_csv(rows, views.LEAD_COLUMNS)
    else:
        render.emit_table(
            [views.masked_row(r) for r in rows], _LIST_COLUMNS, title=f"{len(rows)} leads"
        )


@leads_app.command("show")
def leads_show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Lead key, email address, or raw:ID of a raw lead.")],
    format: Annotated[ShowFormat, typer.Option("--format")] = ShowFormat.table,
) -> None:
    """A lead's fields, score and why, history and CRM links; or why a raw lead was quarantined."""
    with _ctx(ctx).store().connect() as conn:
        if ref.startswith("raw:"):
            story = views.raw_story(conn, _raw_id(ref))
            stories = [story] if story else []
        else:
            stories = [views.lead_story(conn, lead) for lead in views.find_leads(conn, ref)]
    if not stories:
        render.console.print(f"no lead or raw lead matches {ref!r}")
        raise typer.Exit(EXIT_ATTENTION)
    if format is ShowFormat.json:
        render.emit_json(stories if len(stories) > 1 else stories[0])
        return
    for story in stories:
        _print_story(story)


def _raw_id(ref: str) -> int:
    value = ref.removeprefix("raw:")
    if not value.isdigit():
        _usage(f"{ref!r}: write raw:<number>, e.g. raw:42")
    return int(value)


def _print_story(story: dict[str, Any]) -> None:
    out = render.console
    if "raw_lead" in story:
        raw, q = story["raw_lead"], story["quarantine"]
        out.print(
            f"raw lead {raw['id']} from {raw['source']} ({raw['kind']}), "
            f"received {raw['received_at']}, status {raw['status']}"
        )
        if q:
            out.print(
                f"  quarantined ({q['reason']}): {q['field'] or ''} {q['message']}\n"
                f"  fix: {q['fix']}"
            )
        return
    lead = story["lead"]
    out.print(
        f"{lead['lead_key']}  {lead['first_name'] or ''} "
        f"{lead['last_name'] or ''} <{lead['email']}>  {lead['company'] or ''}"
    )
    out.print(
        f"  offer {lead['offer_key']}  stage {lead['stage']}  "
        f"score {lead['score']}  actions {', '.join(lead['actions'])}"
    )
    if lead["flags"] or lead["do_not_contact"]:
        flags = [*lead["flags"], *(["do_not_contact"] if lead["do_not_contact"] else [])]
        out.print(f"  flags: {', '.join(flags)}")
    for rule in lead["score_rules"]:
        out.print(f"  score: {rule}")
    if lead["attribution"]:
        out.print(f"  attribution: {lead['attribution']}")
    render.emit_table(
        [
            {"at": h["at"], "kind": h["kind"], "actor": h["actor"], "detail": _detail(h)}
            for h in story["history"]
        ],
        ("at", "kind", "actor", "detail"),
        title="history",
    )
    if story["links"]:
        render.emit_table(
            story["links"],
            ("target", "external_id", "state", "pushed_stage", "pushed_at"),
            title="CRM links",
        )


def _detail(event: dict[str, Any]) -> str:
    data = event["data"]
    if event["kind"] == "action":
        changed = data.get("changed") or []
        score = data.get("score") or {}
        return f"{data.get('action')} via {data.get('channel')}, score {score.get('to')}" + (
            f"; updated {', '.join(changed)}" if changed else ""
        )
    if event["kind"] == "stage":
        return f"{data.get('from')} → {data.get('to')}: {data.get('reason')}"
    return str(data)


@leads_app.command("quarantine")
def leads_quarantine(
    ctx: typer.Context,
    reason: Annotated[str | None, typer.Option(help="malformed or test.")] = None,
    format: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Raw leads kept in landing but not turned into leads, with the reason and the fix."""
    with _ctx(ctx).store().connect() as conn:
        rows = views.list_quarantine(conn, reason)
    columns = ("raw_lead_id", "source", "reason", "field", "message", "fix", "at")
    if format is Format.json:
        render.emit_json(rows)
    elif format is Format.csv:
        render.emit_csv(rows, columns)
    else:
        render.emit_table(rows, columns, title=f"{len(rows)} quarantined raw leads")


# --- status ----------------------------------------------------------------------------


@app.command("status")
def status_command(
    ctx: typer.Context,
    format: Annotated[ShowFormat, typer.Option("--format")] = ShowFormat.table,
) -> None:
    """Cursors, landing and quarantine counts, the last test lead, leads by stage, outbox."""
    settings = _ctx(ctx).settings
    with _ctx(ctx).store().connect() as conn:
        data = views.status(
            conn, [s.name for s in settings.sources], [t.name for t in settings.targets]
        )
    if format is ShowFormat.json:
        render.emit_json(data)
        return
    out = render.console
    render.emit_table(
        [{"source": k, **v} for k, v in data["sources"].items()],
        ("source", "raw_leads", "updated_at", "cursor"),
        title="sources",
    )
    out.print(f"raw leads: {data['raw_leads']}  quarantine: {data['quarantine']}")
    out.print(f"last Microsoft test lead: {data['last_test_lead_at'] or 'never'}")
    out.print(f"leads: {data['leads']['total']} {data['leads']['by_stage']}")
    if data["targets"]:
        render.emit_table(
            [{"target": k, **v} for k, v in data["targets"].items()],
            ("target", "outbox", "dead_letters"),
            title="targets",
        )


# --- config and db ---------------------------------------------------------------------


@config_app.command("check")
def config_check(ctx: typer.Context) -> None:
    """Validate the configuration; every problem is listed with its key and fix (exit 2)."""
    settings = _ctx(ctx).settings
    render.console.print(
        f"configuration OK: {len(settings.sources)} source(s), "
        f"{len(settings.targets)} target(s), store {settings.masked()['store']}"
    )


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective configuration (file + environment) as JSON, secrets masked."""
    render.emit_json(_ctx(ctx).settings.masked())


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply the store's migrations (also done at every start)."""
    store = Store(_ctx(ctx).settings.store, upgrade=False)
    before = migrate.current_revision(store.engine)
    migrate.upgrade(store.engine)
    render.console.print(
        f"store at revision {migrate.current_revision(store.engine)} (was {before or 'empty'})"
    )


@app.command("demo")
def demo_command(
    ctx: typer.Context,
    workdir: Annotated[Path | None, typer.Option(help="Keep the demo store here.")] = None,
) -> None:
    """Sample marketplace leads through the whole pipeline, no credentials needed."""
    from leadbridge.core.demo import run_demo

    raise typer.Exit(run_demo(workdir))


def _usage(message: str) -> None:
    render.console.print(f"{message}")
    raise typer.Exit(EXIT_USAGE)


def main() -> None:
    app()
