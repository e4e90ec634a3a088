"""The `leadbridge` command (typer). Exit codes: 0 success; 1 the job finished but something
needs attention (quarantined malformed leads, dead letters); 2 usage or configuration error,
which includes a store that can't be opened and a source that can't be read: those are one
line with the fix, never a traceback.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from typer.core import TyperGroup

from leadbridge.core.domain.vocabulary import QuarantineReason, Stage
from leadbridge.core.support.env import CONFIG_ENV

if TYPE_CHECKING:
    from rich.progress import Progress

    from leadbridge.core.delivery.deliver import DeliveryReport
    from leadbridge.core.ingest.pipeline import IngestReport
    from leadbridge.core.settings import ConfigError, Settings
    from leadbridge.core.store.repo import Store


def _lazy(name: str) -> Any:
    """A module loaded when a command first uses it (importlib's LazyLoader): the CLI's
    own start — `--help`, `--version`, a usage error — loads none of the machinery, which
    is most of leadbridge's start-up time (docs/benchmarks.md, "Start-up")."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None, name
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


if TYPE_CHECKING:  # the same modules, seen by the type checker as what they are
    from leadbridge.core import connector as connectors
    from leadbridge.core import settings as config_file
    from leadbridge.core.app import backfill, operations, privacy, render, status, views
    from leadbridge.core.delivery import deliver as delivery
    from leadbridge.core.ingest import pipeline
    from leadbridge.core.store import db as store_db
    from leadbridge.core.store import migrate, repo
    from leadbridge.core.support import logs, metrics
    from leadbridge.core.sync import erasure, retention
else:
    backfill = _lazy("leadbridge.core.app.backfill")
    render = _lazy("leadbridge.core.app.render")  # rich's console: ~40 ms, none for --help
    status = _lazy("leadbridge.core.app.status")
    views = _lazy("leadbridge.core.app.views")
    operations = _lazy("leadbridge.core.app.operations")
    privacy = _lazy("leadbridge.core.app.privacy")
    retention = _lazy("leadbridge.core.sync.retention")
    erasure = _lazy("leadbridge.core.sync.erasure")
    connectors = _lazy("leadbridge.core.connector")
    delivery = _lazy("leadbridge.core.delivery.deliver")
    pipeline = _lazy("leadbridge.core.ingest.pipeline")
    config_file = _lazy("leadbridge.core.settings")
    migrate = _lazy("leadbridge.core.store.migrate")
    repo = _lazy("leadbridge.core.store.repo")
    store_db = _lazy("leadbridge.core.store.db")
    logs = _lazy("leadbridge.core.support.logs")
    metrics = _lazy("leadbridge.core.support.metrics")

Report = TypeVar("Report")  # what a job returns, and hands its on_batch after each batch
EXIT_ATTENTION = 1
EXIT_USAGE = 2
NO_CONFIG_FIX = (
    f"pass --config PATH (before or after the command) or set {CONFIG_ENV}=PATH; "
    "config/leadbridge.example.yaml documents every option"
)


class _StderrConsole:
    """Errors and summaries of JSON output go to stderr: stdout may be read by another
    program. The console is made on the first print, so a command that prints nothing
    there (and `--help`) doesn't load rich."""

    @functools.cached_property
    def _console(self) -> render.SafeConsole:
        return render.SafeConsole(
            stderr=True, markup=False, highlight=False, emoji=False, soft_wrap=True
        )

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self._console.print(*objects, **kwargs)

    @property
    def rich(self) -> render.SafeConsole:
        """The console itself, for a live display (a progress bar) on stderr."""
        return self._console


stderr_console = _StderrConsole()


class LeadbridgeGroup(TyperGroup):
    """The root command, whose `--config` and `--log-format` also work after a subcommand.

    click takes a group's options only before the subcommand, but `leadbridge run --config
    x.yaml` is how people type it. So every subcommand, at any depth, carries the same two
    options too, added here once when typer builds the command tree: no command declares
    them, and a command added later gets them as well. Their values land on the one
    `Context` the root callback made (click runs it before it parses a subcommand's
    options); given twice, the one after the subcommand wins.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _share_options(self.commands.values(), _shared_options())


def _share_options(commands: Iterable[Any], options: list[Any]) -> None:
    """Parameters hold no per-run state (values live on click's context): one set serves
    every command."""
    for command in commands:
        taken = {param.name for param in command.params}
        command.params.extend(o for o in options if o.name not in taken)
        if isinstance(command, TyperGroup):
            _share_options(command.commands.values(), options)


class LogFormat(StrEnum):
    json = "json"
    text = "text"


def _remember_config(ctx: typer.Context, value: Path | None) -> None:
    context = ctx.find_object(Context)
    if value is not None and context is not None:
        context.config_path = value


def _remember_log_format(ctx: typer.Context, value: LogFormat | None) -> None:
    context = ctx.find_object(Context)
    if value is not None and context is not None:
        context.log_format = value.value
        logs.setup(value.value, "INFO")  # as the root does: commands without a config log too


def _shared_options() -> list[Any]:
    """The two options as parameters of a subcommand, made by typer itself from a
    signature, so they are whatever parameter class this typer version builds commands of."""
    holder = typer.Typer(add_completion=False)

    @holder.command()
    def options(
        config: Annotated[
            Path | None,
            typer.Option(
                "--config",
                "-c",
                expose_value=False,
                callback=_remember_config,
                help=f"YAML config file (here, before the command, or {CONFIG_ENV}).",
                show_default=False,
            ),
        ] = None,
        log_format: Annotated[
            LogFormat | None,
            typer.Option(
                "--log-format",
                expose_value=False,
                callback=_remember_log_format,
                help="json (default) or text.",
                show_default=False,
            ),
        ] = None,
    ) -> None:
        """Never run: typer reads its signature."""

    return list(typer.main.get_command(holder).params)


# Help and usage errors in click's plain format (typer's `rich_markup_mode=None`): typer's
# rich formatting loads rich's Markdown, Syntax and Traceback (markdown-it, pygments), about
# 110 ms of the 0.3 s start-up budget (docs/benchmarks.md, "Start-up"). Each Typer sets it:
# typer reads it per group. cli_alerts.py and cli_console.py do the same.
app = typer.Typer(
    cls=LeadbridgeGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="Microsoft marketplace leads into your CRMs, deduplicated and stage-synced.",
)
leads_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Look at leads and quarantined raw leads.",
)
dlq_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Dead letters: leads a CRM refused for good.",
)
auth_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Sign in to systems that need a person.",
)
report_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Reports from leadbridge's own history.",
)
config_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Validate or print the configuration.",
)
db_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Store maintenance.")
app.add_typer(leads_app, name="leads")
app.add_typer(dlq_app, name="dlq")
app.add_typer(auth_app, name="auth")
app.add_typer(report_app, name="report")
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
# --- alerts (issue 18) ---
from leadbridge.core.app.cli_alerts import alerts_app  # noqa: E402  (light: typer only)

app.add_typer(alerts_app, name="alerts")
# --- scoring (issue 24) ---
from leadbridge.core.app import cli_scoring  # noqa: E402 (registered here, by its anchor)

cli_scoring.register(app)
# --- the operator console (issue 19) ---
from leadbridge.core.app.cli_console import console_app  # noqa: E402  (light: typer only)

app.add_typer(console_app, name="console")
log = logging.getLogger("leadbridge.cli")


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class ShowFormat(StrEnum):
    table = "table"
    json = "json"


# The reasons the pipeline quarantines for (one list, kept by core/metrics.py).


@dataclass
class Context:
    """What the global options chose; the settings and the store are opened on first use,
    so a command that needs neither (`demo`, `sandbox`) needs no config."""

    config_path: Path | None
    log_format: str | None = None
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """The loaded config. Without one, exit 2: silently running on defaults would make
        `./leadbridge.db` in whatever folder the command ran from and sync nothing."""
        if self._settings is None:
            if self.config_path is None:
                fail("no configuration given", NO_CONFIG_FIX)
            try:
                self._settings = config_file.load_settings(self.config_path)
            except config_file.ConfigError as exc:
                _print_problems(exc)
                raise typer.Exit(EXIT_USAGE) from None
            logs.setup(self.log_format or self._settings.log_format, self._settings.log_level)
        return self._settings

    def store(self, *, upgrade: bool = True) -> Store:
        """The store, migrated; one that can't be opened is one line and exit 2."""
        url = self.settings.store
        try:
            return repo.Store(url, upgrade=upgrade)
        except store_db.StoreUnavailable as exc:
            store_failed(url, exc)


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar=CONFIG_ENV, help="YAML config file.", show_default=False),
]


def _print_version(asked: bool) -> None:
    """Plain text (typer's echo, not rich's console): one line needs no rich loaded."""
    if asked:
        from importlib.metadata import version

        typer.echo(f"leadbridge {version('leadbridge')}")
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    config: ConfigOption = None,
    log_format: Annotated[
        str | None, typer.Option("--log-format", help="json (default) or text.")
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Options go before or after the command: `leadbridge run --config x.yaml` works."""
    if log_format not in (None, "json", "text"):
        raise typer.BadParameter("use json or text", param_hint="--log-format")
    ctx.obj = Context(config, log_format)
    logs.setup(log_format or "json", "INFO")


def _ctx(ctx: typer.Context) -> Context:
    context: Context = ctx.obj  # the root callback put it there: click types it as Any
    return context


def _print_problems(exc: ConfigError) -> None:
    """On stderr: a command's output (`leads list --format json > leads.json`) must never
    hold the complaint instead."""
    stderr_console.print(f"configuration has {len(exc.problems)} problem(s):")
    for problem in exc.problems:
        stderr_console.print(f"  {problem.key}: {problem.message}\n      fix: {problem.fix}")


def fail(problem: str, fix: str) -> NoReturn:
    """A command that can't start or go on because of its configuration or its
    surroundings: one line on stderr saying what and the fix, exit 2 — never a traceback."""
    stderr_console.print(f"{logs.redact(problem)} — fix: {fix}")
    raise typer.Exit(EXIT_USAGE)


def first_line(exc: BaseException) -> str:
    """What an error says, on one line (a library's message may run to a page)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def store_failed(url: str, exc: store_db.StoreUnavailable) -> NoReturn:
    fail(f"the store {config_file.mask_url(url)} can't be opened: {exc.reason}", exc.fix)


class SourceUnreadable(Exception):
    """A source's own read failed (its file is missing, its service refused or is down)."""

    def __init__(self, source: str, cause: BaseException) -> None:
        super().__init__(f"{source}: {cause}")
        self.source = source
        self.cause = cause


class _ReadGuard:
    """A source whose failures while reading are `SourceUnreadable`, naming it. Only the
    source's own `fetch` is guarded: an error in landing or processing stays what it is."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.name = source.name

    def fetch(self, cursor: str | None) -> Iterator[Any]:
        try:
            records = iter(self.source.fetch(cursor))
        except Exception as exc:  # whatever the source's library raises
            raise SourceUnreadable(self.name, exc) from exc
        while True:
            try:
                item = next(records)
            except StopIteration:
                return
            except Exception as exc:
                raise SourceUnreadable(self.name, exc) from exc
            yield item


def _guarded(source: Any) -> _ReadGuard:
    """The source behind a read guard that keeps its capabilities: one that can count its
    records (a leads file) still can, for the progress bar's total."""
    if isinstance(source, connectors.Countable):
        return _counting_guard()(source)
    return _ReadGuard(source)


@functools.cache
def _counting_guard() -> type[_ReadGuard]:
    # Made on first use: subclassing the capability at import would load core.connector
    # for every command, `--help` included (start-up, docs/benchmarks.md).
    class CountingReadGuard(_ReadGuard, connectors.Countable):
        def expected_records(self, cursor: str | None) -> int | None:
            try:
                counted: int | None = self.source.expected_records(cursor)
            except OSError:  # can't tell: the read itself will say what is wrong
                return None
            return counted

    return CountingReadGuard


def source_failed(exc: SourceUnreadable) -> NoReturn:
    fail(
        f"source {exc.source} can't be read: {first_line(exc.cause)}",
        f"check sources[{exc.source}] (`leadbridge config check`) and that what it reads "
        "is there and reachable from here",
    )


# --- pipeline.ingest ----------------------------------------------------------------------------


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
    total = pipeline.IngestReport()
    with _watch() as watcher:
        for config in configs:
            report = _run_ingest(connectors.build(config), store, settings, watcher)
            total.add(report)
            total.fetched += report.fetched
    _print_ingest(total, settings.test_leads)
    if total.needs_attention:
        raise typer.Exit(EXIT_ATTENTION)


def _on_terminal(
    label: str,
    job: Callable[[Callable[[Report], None] | None], Report],
    describe: Callable[[Report], str],
) -> Report:
    """Run `job(on_batch)`; on a terminal a spinner shows `describe(report)` after each batch
    (elsewhere the job's own log line per batch says it)."""
    if not sys.stderr.isatty():
        return job(None)
    from rich.progress import Progress, SpinnerColumn, TextColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), transient=True, console=render.console
    ) as progress:
        task = progress.add_task(label)
        return job(lambda report: progress.update(task, description=describe(report)))


def _run_ingest(src: Any, store: Store, settings: Settings, watcher: Any) -> IngestReport:
    try:
        return pipeline.ingest(_guarded(src), store, settings, watcher=watcher)
    except SourceUnreadable as exc:
        source_failed(exc)


def _watch() -> Any:
    """The progress of a long read (core/app/progress.py): a bar with rate and time left
    on a terminal, a JSON progress line in the logs every 10 s elsewhere."""
    from leadbridge.core.app.progress import RunProgress

    terminal = sys.stderr.isatty()
    return RunProgress(console=stderr_console.rich, terminal=terminal)


def _print_ingest(report: IngestReport, test_leads: str = "quarantine") -> None:
    """One line in which every processed raw lead is counted once (views.ingest_line);
    `test_leads` is the config's setting, which decides where test leads are counted."""
    render.console.print(views.ingest_line(report, test_leads, fetched=report.fetched))
    for problem in report.problems[:20]:
        render.console.print(f"  quarantined {render.safe(problem)}")
    if report.quarantined:
        render.console.print("  see them with: leadbridge leads quarantine")


# --- delivery.deliver and backfill --------------------------------------------------------------


def _targets(settings: Settings, only: str | None) -> list[Any]:
    configs = settings.target_configs()
    if only:
        configs = [c for c in configs if c.name == only]
        if not configs:
            _usage(
                f"no target named {only!r}; configured: "
                f"{', '.join(t.name for t in settings.targets) or 'none'}"
            )
    return configs


@app.command("deliver")
def deliver_command(
    ctx: typer.Context,
    target: Annotated[str | None, typer.Option(help="Deliver only to this target.")] = None,
) -> None:
    """Drain the outbox once: upsert every pending lead into its targets."""
    settings = _ctx(ctx).settings
    store = _ctx(ctx).store()
    reports = [
        _run_deliver(connectors.build(c, placeholder=settings.placeholder), store, settings)
        for c in _targets(settings, target)
    ]
    for report in reports:
        _print_delivery(report)
    if any(r.needs_attention for r in reports):
        raise typer.Exit(EXIT_ATTENTION)


def _run_deliver(target: Any, store: Store, settings: Settings) -> DeliveryReport:
    return _on_terminal(
        f"delivering to {target.name}",
        lambda on_batch: delivery.deliver(target, store, settings, on_batch=on_batch),
        lambda r: f"delivering to {target.name}: {r.pushed} pushed, {r.batches} batches",
    )


def _print_delivery(report: DeliveryReport) -> None:
    line = (
        f"{report.target}: {report.pushed} pushed in {report.api_calls} API calls, "
        f"{report.skipped_unchanged} unchanged (no call), {report.retrying} to retry, "
        f"{report.dead_lettered} dead-lettered, {report.converted} converted"
    )
    if report.fatal:
        line += f" — STOPPED: {report.fatal}"
    elif report.pause:  # the vendor's own order: nothing is sent to it before then
        until = report.pause.until.isoformat(timespec="seconds")
        line += f" — PAUSED by the vendor until {until}: {report.pause.why}"
    elif report.paused_until:
        line += f" — paused until {report.paused_until.isoformat(timespec='seconds')}"
    render.console.print(line)
    for error in report.errors[:10]:
        render.console.print(f"  dead letter: {render.safe(error)}")


@app.command("backfill")
def backfill_command(
    ctx: typer.Context,
    since: Annotated[datetime | None, typer.Option(help="Leads active on or after (UTC).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Leads active on or before (UTC).")] = None,
    source: Annotated[str | None, typer.Option(help="Re-read only this source.")] = None,
    target: Annotated[str | None, typer.Option(help="Deliver only to this target.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be sent.")] = False,
) -> None:
    """Re-read sources from the start, then push the leads active in the range. Resumable.

    --dry-run reads no source and sends nothing: one JSON line per lead push on stdout,
    the count on stderr."""
    settings = _ctx(ctx).settings
    since, until = _utc(since), _utc(until)
    targets = [t.name for t in _targets(settings, target)]
    if source and source not in [s.name for s in settings.sources]:
        _usage(f"no source named {source!r}")
    store = _ctx(ctx).store()
    if dry_run:
        rows = list(backfill.dry_run(store, settings, since=since, until=until, targets=targets))
        for row in rows:
            render.emit_json_line(row)
        sending = sum(1 for r in rows if r["would_send"])
        stderr_console.print(f"dry run: {sending} of {len(rows)} lead pushes would be sent")
        return
    missing = config_file.config_warnings(settings, sources=[source] if source else None)
    if missing:  # a backfill reads every source now: a file still to come is an error here
        fail(f"{missing[0].key}: {missing[0].message}", "correct the path, or wait for the file")
    with _watch() as watcher, _progress() as progress:
        try:
            report = backfill.run(
                store,
                settings,
                since=since,
                until=until,
                sources=[source] if source else None,
                targets=targets,
                on_deliver=progress.deliver,
                watcher=watcher,
            )
        except (OSError, connectors.ConnectorError) as exc:  # a source's read failed
            fail(
                f"backfill stopped, a source can't be read: {first_line(exc)}",
                "check the sources (`leadbridge config check`); run the backfill again "
                "to resume where it stopped",
            )
    for ingested in report.ingested:
        _print_ingest(ingested)
    render.console.print(f"queued {report.queued} lead pushes")
    for delivered in report.delivered:
        _print_delivery(delivered)
    if report.needs_attention:
        raise typer.Exit(EXIT_ATTENTION)


class _BackfillProgress:
    """The delivery half of a backfill: a spinner with running counts on a terminal; nothing
    otherwise (logs say it per batch). The reading half is `_watch`'s bar."""

    def __init__(self) -> None:
        self.bar: Progress | None = None
        self.task: Any = None

    def __enter__(self) -> _BackfillProgress:
        if sys.stderr.isatty():
            from rich.progress import Progress, SpinnerColumn, TextColumn

            self.bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                transient=True,
                console=render.console,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task("backfill")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.__exit__(exc_type, exc, traceback)

    def deliver(self, report: DeliveryReport) -> None:
        if self.bar is not None:
            self.bar.update(
                self.task, description=f"delivering to {report.target}: {report.pushed} pushed"
            )


def _progress() -> _BackfillProgress:
    return _BackfillProgress()


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- stage sync ------------------------------------------------------------------------


@app.command("sync-stages")
def sync_stages_command(
    ctx: typer.Context,
    target: Annotated[
        str | None, typer.Option(help="Read stages back from this target only.")
    ] = None,
) -> None:
    """Read stage changes and opt-outs back from the CRMs, reconcile them, and deliver
    the outcome (an opt-out to every target, as true)."""
    from leadbridge.core.sync.consentsync import pull_opt_outs
    from leadbridge.core.sync.stagesync import pull_stages

    settings = _ctx(ctx).settings
    store = _ctx(ctx).store()
    _targets(settings, target)  # names the target when it doesn't exist
    targets = [
        connectors.build(c, placeholder=settings.placeholder) for c in settings.target_configs()
    ]
    if target and not any(t.name == target and t.policy().pulls for t in targets):
        pulling = [t.name for t in targets if t.policy().pulls]
        _usage(
            f"target {target!r} does not read stages back (stage_sync: "
            f"{next(t.stage_sync for t in targets if t.name == target)}); targets that do: "
            f"{', '.join(pulling) or 'none'}"
        )
    report = pull_stages(targets, store, settings, only=[target] if target else None)
    for name, count in report.read.items():
        render.console.print(
            f"{name}: read {count} records in {report.api_calls[name]} API call(s)"
        )
    render.console.print(
        f"{report.applied} stage change(s) accepted, {report.refused} refused "
        f"and re-asserted, {report.unchanged} unchanged or echoes"
    )
    for name, error in report.errors.items():
        render.console.print(f"  {name}: could not read stages: {error}")
    for name, pause in report.paused.items():  # the vendor asked: not a failure
        render.console.print(f"  {name}: paused by the vendor {pause}; not read")
    consent = pull_opt_outs(targets, store, settings, only=[target] if target else None)
    if consent.read:
        render.console.print(
            f"opt-outs: {sum(consent.read.values())} read; {consent.leads} lead(s) of "
            f"{consent.people} person(s) newly opted out; {consent.unknown} of records "
            "leadbridge doesn't know"
        )
    for name, error in consent.errors.items():
        render.console.print(f"  {name}: could not read opt-outs: {error}")
    deliveries = [delivery.deliver(t, store, settings) for t in targets]
    for delivered in deliveries:
        if delivered.pushed or delivered.needs_attention:
            _print_delivery(delivered)
    if report.errors or consent.errors or any(d.needs_attention for d in deliveries):
        raise typer.Exit(EXIT_ATTENTION)


# --- reports ---------------------------------------------------------------------------


class ReportFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    html = "html"


class PeriodKind(StrEnum):
    month = "month"
    quarter = "quarter"
    half = "half"
    year = "year"


class Grouping(StrEnum):
    offer = "offer"
    source = "source"
    action = "action"
    target = "target"
    grade = "grade"


@report_app.command("funnel")
def report_funnel(
    ctx: typer.Context,
    period: Annotated[
        PeriodKind, typer.Option(help="The period containing --at.")
    ] = PeriodKind.quarter,
    at: Annotated[
        datetime | None, typer.Option(help="A day in the period (default: today).")
    ] = None,
    from_: Annotated[
        datetime | None, typer.Option("--from", help="First day (instead of --period).")
    ] = None,
    to: Annotated[datetime | None, typer.Option(help="Last day, included.")] = None,
    by: Annotated[
        Grouping | None,
        typer.Option(
            help="Also per offer, source, action, the CRM that accepted the lead, or the "
            "fit × engagement grade it had when it became an MQL."
        ),
    ] = None,
    spend: Annotated[
        Path | None, typer.Option(help="CSV of date,amount[,offer] for cost per SQL.")
    ] = None,
    sla_hours: Annotated[float | None, typer.Option(help="Contact-me follow-up threshold.")] = None,
    format: Annotated[ReportFormat, typer.Option("--format")] = ReportFormat.table,
    output: Annotated[
        Path | None, typer.Option(help="Write to this file instead of stdout.")
    ] = None,
    follow_up: Annotated[
        bool,
        typer.Option(
            "--follow-up",
            help="Only the Contact-me leads to act on (breaches, then open ones by due time); "
            "table, csv or json. The html page always has them.",
        ),
    ] = False,
) -> None:
    """MQLs, SQLs, acceptance rate, MQL → SQL velocity, follow-up SLA and cost per SQL."""
    from leadbridge.core.reports import funnel as reports

    settings = _ctx(ctx).settings
    if (from_ is None) != (to is None):
        _usage("give both --from and --to, or neither (and --period)")
    chosen = (
        reports.period_between(from_.date(), to.date())
        if from_ and to
        else reports.period_for(period.value, (at or datetime.now(UTC)).date())
    )
    try:
        rows = reports.read_spend(spend) if spend else None
    except (OSError, reports.SpendFileError) as exc:
        _usage(str(exc))
    with _ctx(ctx).store().snapshot() as conn:
        report = reports.funnel(
            conn,
            chosen,
            by=by.value if by else None,
            spend=rows,
            sla_hours=sla_hours or settings.reports.sla_hours,
        )
    text = _render_follow_up(report, format) if follow_up else _render_report(report, format)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        render.console.print(f"wrote {output}")
    elif text:
        sys.stdout.write(text)


_REPORT_COLUMNS = (
    "group",
    "raw_leads",
    "unique_leads",
    "test_leads",
    "invalid_email_leads",
    "dnc_leads",
    "mql",
    "sql",
    "opportunity",
    "customer",
    "recycled",
    "disqualified",
    "acceptance_rate",
    "velocity_mean_days",
    "velocity_median_days",
    "velocity_p90_days",
    "sla_share",
    "sla_breaches",
    "sla_open",
    "spend",
    "cost_per_sql",
    "lagged_cost_per_sql",
)


def _flat(name: str, figures: dict[str, Any]) -> dict[str, Any]:
    cost = figures.get("cost") or {}
    return {
        "group": name,
        **{
            k: figures[k]
            for k in ("raw_leads", "unique_leads", "test_leads", "invalid_email_leads", "dnc_leads")
        },
        **figures["stages"],
        "acceptance_rate": figures["acceptance"]["rate"],
        "velocity_mean_days": figures["velocity_days"]["mean"],
        "velocity_median_days": figures["velocity_days"]["median"],
        "velocity_p90_days": figures["velocity_days"]["p90"],
        "sla_share": figures["sla"]["share"],
        "sla_breaches": len(figures["sla"]["breaches"]),
        "sla_open": len(figures["sla"]["open"]),
        "spend": cost.get("spend"),
        "cost_per_sql": cost.get("per_sql"),
        "lagged_cost_per_sql": cost.get("lagged_per_sql"),
    }


def _render_report(report: dict[str, Any], format: ReportFormat) -> str:
    from leadbridge.core.reports import html as report_html

    if format is ReportFormat.html:
        # group names are offer keys and action codes from outside: inert on a terminal too
        return render.terminal_safe(report_html.render(report))
    if format is ReportFormat.json:
        return render.json_text(report) + "\n"
    rows = [_flat("total", report["total"])] + [_flat(g["group"], g) for g in report["groups"]]
    if format is ReportFormat.csv:
        return render.csv_text(rows, _REPORT_COLUMNS)
    render.emit_table(
        rows,
        (
            "group",
            "unique_leads",
            "mql",
            "sql",
            "acceptance_rate",
            "velocity_median_days",
            "velocity_p90_days",
            "sla_share",
            "cost_per_sql",
            "lagged_cost_per_sql",
        ),
        title=f"funnel {report['period']['label']}",
    )
    _print_follow_up(report, shown=FOLLOW_UP_SHOWN)
    return ""


_FOLLOW_UP_TABLE = ("status", "name", "company", "email", "offer", "asked_at", "due_by")
# Follow-ups the funnel's table lists under its figures: the most urgent (breaches first,
# then by due time); `--follow-up` lists them all.
FOLLOW_UP_SHOWN = 20


def _print_follow_up(report: dict[str, Any], shown: int | None = None) -> None:
    """Who to call: the breaches and the leads still inside their window (not late yet);
    the first `shown` of them, when given, and how many more there are."""
    from leadbridge.core.reports import funnel as reports

    sla = report["total"]["sla"]
    decided = sla["within"] + len(sla["breaches"])
    render.console.print(
        f"Contact-me follow-up within {sla['threshold_hours']:g} h: {sla['within']} of "
        f"{decided} on time, {len(sla['breaches'])} breached, {len(sla['open'])} open "
        "(still inside their window)"
    )
    rows = [
        row | {k: reports.minute(row[k]) for k in ("asked_at", "due_by")}
        for row in reports.follow_up_rows(sla)
    ]
    listed = rows if shown is None else rows[:shown]
    if listed:
        render.emit_table(listed, _FOLLOW_UP_TABLE, title="Contact-me leads to act on")
    if len(rows) > len(listed):
        render.console.print(
            f"… and {len(rows) - len(listed)} more: `leadbridge report funnel --follow-up` "
            "lists them all (--format csv or json for a file)"
        )


def _render_follow_up(report: dict[str, Any], format: ReportFormat) -> str:
    from leadbridge.core.reports import funnel as reports

    rows = reports.follow_up_rows(report["total"]["sla"])
    if format is ReportFormat.json:
        return render.json_text(rows) + "\n"
    if format is ReportFormat.csv:
        return render.csv_text(rows, reports.FOLLOW_UP_COLUMNS)
    if format is ReportFormat.html:
        return _render_report(report, format)
    _print_follow_up(report)
    return ""


# --- auth ------------------------------------------------------------------------------


@auth_app.command("sign-in")
def auth_sign_in(
    ctx: typer.Context,
    source: Annotated[str, typer.Option(help="The source to sign in (one that needs a person).")],
) -> None:
    """Sign a person in once for a source that reads with their delegated permissions (e.g.
    Partner Center referrals, by device code); its token cache then renews itself."""
    from leadbridge.core.connector import InteractiveSignIn

    settings = _ctx(ctx).settings
    config = next((c for c in settings.source_configs() if c.name == source), None)
    if config is None:
        _usage(f"no source named {source!r}")
    signing = connectors.build(config)
    if not isinstance(signing, InteractiveSignIn):
        _usage(f"source {source!r} ({config.kind}) needs no sign-in")
    who = signing.sign_in(lambda message: render.console.print(message))
    render.console.print(f"signed in as {who}")


# --- dead letters ----------------------------------------------------------------------

_DLQ_COLUMNS = ("id", "target", "lead_key", "error_class", "error", "created_at")


@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context,
    target: Annotated[str | None, typer.Option(help="Only this target.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include replayed and discarded.")] = False,
    format: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Open dead letters, oldest first."""
    _known_dead_letter_target(_ctx(ctx).settings, _ctx(ctx).store(), target)
    with _ctx(ctx).store().connect() as conn:
        rows = views.dead_letter_rows(conn, target, include_resolved=all_)
    if format is Format.json:
        render.emit_json(rows)
    elif format is Format.csv:
        render.emit_csv(rows, (*_DLQ_COLUMNS, "resolution"))
    else:
        render.emit_table(rows, _DLQ_COLUMNS, title=f"{len(rows)} dead letters")


@dlq_app.command("show")
def dlq_show(ctx: typer.Context, letter_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """One dead letter with the CRM's own error body."""
    with _ctx(ctx).store().connect() as conn:
        row = views.dead_letter(conn, letter_id)
    if row is None:
        render.console.print(f"no dead letter {letter_id}")
        raise typer.Exit(EXIT_ATTENTION)
    render.emit_json(row)


@dlq_app.command("replay")
def dlq_replay(
    ctx: typer.Context,
    letter_id: Annotated[int | None, typer.Argument(metavar="[ID]")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every open dead letter.")] = False,
    target: Annotated[str | None, typer.Option(help="Every open dead letter of a target.")] = None,
) -> None:
    """Queue dead-lettered leads again (after fixing the CRM or the mapping) and deliver."""
    if letter_id is None and not all_ and target is None:
        _usage("say which: an ID, --all, or --target NAME")
    try:
        replay = operations.replay_dead_letters(
            _ctx(ctx).settings,
            _ctx(ctx).store(),
            letter_ids=None if letter_id is None else [letter_id],
            target=target,
            actor="cli",
        )
    except operations.UnknownTarget as exc:
        _usage(f"no target named {exc.name!r}; choose from: {', '.join(exc.known) or 'none'}")
    if letter_id is not None and not replay.replayed:
        render.console.print(f"no open dead letter {letter_id} (see: leadbridge dlq list --all)")
        raise typer.Exit(EXIT_ATTENTION)
    render.console.print(f"replaying {replay.replayed} dead letter(s)")
    for report in replay.reports:
        _print_delivery(report)
    if replay.needs_attention:
        raise typer.Exit(EXIT_ATTENTION)


def _known_dead_letter_target(settings: Settings, store: Store, target: str | None) -> None:
    """`--target` names a configured target, or one that still has dead letters (a target
    since removed from the config): anything else is a typo, exit 2 with the choices."""
    try:
        operations.check_target(settings, store, target)
    except operations.UnknownTarget as exc:
        _usage(f"no target named {exc.name!r}; choose from: {', '.join(exc.known) or 'none'}")


@dlq_app.command("discard")
def dlq_discard(
    ctx: typer.Context,
    letter_id: Annotated[int, typer.Argument(metavar="ID")],
    reason: Annotated[
        str | None, typer.Option(help="Why, for the lead's history (e.g. a duplicate).")
    ] = None,
) -> None:
    """Close a dead letter without sending it again."""
    if not operations.discard_dead_letter(_ctx(ctx).store(), letter_id, actor="cli", reason=reason):
        render.console.print(f"no open dead letter {letter_id}")
        raise typer.Exit(EXIT_ATTENTION)
    render.console.print(f"discarded dead letter {letter_id}")


# --- sandbox ---------------------------------------------------------------------------


@app.command("sandbox")
def sandbox_command(
    crm: Annotated[
        str | None,
        typer.Option(help="Comma-separated kinds (default: every installed CRM's sandbox)."),
    ] = None,
    port: Annotated[int, typer.Option(help="First port (0: any free ports).")] = 0,
    latency_ms: Annotated[float, typer.Option(help="Latency added to every API request.")] = 0.0,
    targets_out: Annotated[
        Path | None, typer.Option(help="Also write the targets block to this YAML file.")
    ] = None,
    faults: Annotated[
        str,
        typer.Option(
            help="status:share pairs, e.g. 423:0.1,521:0.05: each sandbox answers that share "
            "of API requests with that status, in its vendor's own body; a sandbox that can't "
            "answer a status says so (each answers its throttling status and 500/502/503/504)."
        ),
    ] = "",
) -> None:
    """Run local CRM sandboxes until interrupted; prints a `targets:` block pointing at them."""
    from leadbridge.core.connector import sandboxes
    from leadbridge.core.connector.sandboxes import apply_faults, parse_faults

    installed = sandboxes.kinds()
    kinds = [k.strip() for k in crm.split(",") if k.strip()] if crm else installed
    unknown = [k for k in kinds if k not in installed]
    if unknown:
        _usage(f"unknown CRM {unknown[0]!r}; use {', '.join(installed)}")
    try:
        statuses = parse_faults(faults)
    except ValueError as exc:
        _usage(f"--faults: {exc}")
    ports = {k: port + i for i, k in enumerate(kinds)} if port else None
    started = sandboxes.start(kinds, latency_ms=latency_ms, ports=ports)
    try:
        skipped = apply_faults(started, statuses)
    except ValueError as exc:
        sandboxes.stop(started)
        _usage(f"--faults: {exc}")
    for kind, left_out in skipped.items():
        render.console.print(
            f"{kind} sandbox: no {', '.join(map(str, left_out))} (it answers "
            f"{', '.join(map(str, sorted(started[kind].fault_statuses())))})"
        )
    if statuses:
        render.console.print(
            "faults: "
            + ", ".join(f"{s} on {share:.0%} of requests" for s, share in statuses.items())
        )
    entries = [sandboxes.target_entry(k, s) for k, s in started.items()]
    render.console.print("sandboxes running on loopback; targets for your config:")
    import yaml

    block = yaml.safe_dump({"targets": entries}, sort_keys=False)
    render.console.print(block)
    if targets_out is not None:
        partial = targets_out.with_suffix(".partial")
        partial.write_text(block, encoding="utf-8")
        partial.replace(targets_out)  # atomically: a reader never sees half a file
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandboxes.stop(started)


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


_GRADE = re.compile(r"^[A-Da-d][1-4]?$")


@leads_app.command("list")
def leads_list(
    ctx: typer.Context,
    stage: Annotated[
        Stage | None, typer.Option(help="Only this stage.", case_sensitive=False)
    ] = None,
    offer: Annotated[str | None, typer.Option(help="Only this offer key.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many.", min=1)] = None,
    format: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
    grade: Annotated[
        str | None,
        typer.Option(help="Only this fit × engagement grade: a cell (A1) or a fit grade (A)."),
    ] = None,
) -> None:
    """List leads, oldest first."""
    if grade is not None and not _GRADE.match(grade):
        _usage(f"--grade {grade!r}: write a grid cell A1…D4, or a fit grade A…D")
    with _ctx(ctx).store().connect() as conn:
        if offer is not None:
            offers = views.offer_keys(conn)
            if offer not in offers:
                _usage(f"no lead has the offer {offer!r}; offers: {_choices(offers)}")
        chosen = views.LeadFilter(
            stage=stage.value if stage else None, offer=offer, limit=limit, grade=grade
        )
        # JSON and CSV are written as the store yields leads (memory stays flat however many
        # there are), so while the connection is open; a table needs every row first.
        if format is Format.json:
            render.emit_json_array(views.iter_leads(conn, **chosen))
            return
        if format is Format.csv:
            render.emit_csv(views.iter_leads(conn, **chosen), views.LEAD_COLUMNS)
            return
        rows = views.list_leads(conn, **chosen)
    # The grade column only where leads are graded (a config with fit × engagement).
    graded = any(r.get("grade") for r in rows)
    columns = (*_LIST_COLUMNS[:8], "grade", *_LIST_COLUMNS[8:]) if graded else _LIST_COLUMNS
    render.emit_table([views.masked_row(r) for r in rows], columns, title=f"{len(rows)} leads")


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


@leads_app.command("export")
def leads_export(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The person's email address.")],
) -> None:
    """Everything held on a person (right of access), as one JSON document on stdout:
    leads, history, CRM records, dead letters and raw payloads."""
    with _ctx(ctx).store().connect() as conn:
        held = privacy.export_person(conn, email, repo.utcnow())
    if held is None:
        stderr_console.print("nothing is held on that address")
        raise typer.Exit(EXIT_ATTENTION)
    render.emit_json(held)


@leads_app.command("forget")
def leads_forget(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The person's email address.")],
    yes: Annotated[bool, typer.Option("--yes", help="Don't ask (scripts).")] = False,
) -> None:
    """Erase a person (right to erasure): from the store now, and from every CRM what
    leadbridge created there; their next action is set aside, never a lead again."""
    settings = _ctx(ctx).settings
    if settings.privacy.suppression_key is None:
        fail(
            "privacy.suppression_key is not set: a forgotten person could not be recognised "
            "when they act again",
            "set it to a long random secret (e.g. ${LEADBRIDGE_SUPPRESSION_KEY}) and keep it "
            "as long as the store (docs/privacy.md)",
        )
    if not yes:
        if not sys.stdin.isatty():
            _usage("not on a terminal: add --yes to erase without being asked")
        typer.confirm(
            f"Erase {email} from the store and from every target? This can't be undone",
            abort=True,
        )
    targets = [
        connectors.build(c, placeholder=settings.placeholder) for c in settings.target_configs()
    ]
    done = erasure.forget(
        _ctx(ctx).store(), settings, email, targets, actor="cli", now=repo.utcnow()
    )
    _print_erasure(done)
    if done.needs_attention:
        raise typer.Exit(EXIT_ATTENTION)


def _print_erasure(done: erasure.ErasureReport) -> None:
    removed = ", ".join(f"{n} {table}" for table, n in sorted(done.removed.items()))
    render.console.print(
        f"erasure {done.erasure_id or '(nothing held)'}: removed from the store: "
        f"{removed or 'nothing'}; the address is on the suppression list"
    )
    for target, states in sorted(done.targets.items()):
        counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        render.console.print(f"  {target}: {counts}")
    for error in done.errors:
        render.console.print(f"  {error} (asked again by the daemon, or run forget again)")
    if any(states.get("kept") for states in done.targets.values()):
        render.console.print(
            "  kept: records leadbridge did not create, or in a target that can't delete "
            "them: erase those in the CRM by hand"
        )


def _choices(values: list[str], shown: int = 20) -> str:
    """The valid values of an option, for a usage error: the first `shown` and how many more."""
    listed = ", ".join(values[:shown]) or "none yet"
    return listed + (f" and {len(values) - shown} more" if len(values) > shown else "")


def _raw_id(ref: str) -> int:
    value = ref.removeprefix("raw:")
    if not value.isdigit():
        _usage(f"{ref!r}: write raw:<number>, e.g. raw:42")
    return int(value)


def _print_story(story: dict[str, Any]) -> None:
    """Every value is passed through render.safe: a name, a message or a code from outside
    can neither drive the terminal nor fake a line of its own."""
    out, v = render.console, render.safe
    if "raw_lead" in story:
        raw, q = story["raw_lead"], story["quarantine"]
        out.print(
            f"raw lead {raw['id']} from {v(raw['source'])} ({v(raw['kind'])}), "
            f"received {v(raw['received_at'])}, status {v(raw['status'])}"
        )
        if q:
            out.print(
                f"  quarantined ({v(q['reason'])}): {v(q['field'])} {v(q['message'])}\n"
                f"  fix: {v(q['fix'])}"
            )
        return
    lead = story["lead"]
    out.print(  # a table masks the email (docs/cli-json.md); --format json has it in full
        f"{v(lead['lead_key'])}  {v(lead['first_name'])} "
        f"{v(lead['last_name'])} <{v(logs.mask_email(lead['email']))}>  {v(lead['company'])}"
    )
    out.print(
        f"  offer {v(lead['offer_key'])}  stage {v(lead['stage'])}  "
        f"score {v(lead['score'])}  actions {', '.join(v(a) for a in lead['actions'])}"
    )
    if lead.get("grade"):
        out.print(
            f"  grade {v(lead['grade'])}  fit {v(lead['fit'])}  engagement {v(lead['engagement'])}"
        )
    if lead["flags"] or lead["do_not_contact"]:
        flags = [*lead["flags"], *(["do_not_contact"] if lead["do_not_contact"] else [])]
        out.print(f"  flags: {', '.join(v(f) for f in flags)}")
    for rule in lead["score_rules"]:
        out.print(f"  score: {v(views.readable_rule(rule))}")
    if lead["attribution"]:
        out.print(f"  attribution: {v(lead['attribution'])}")
    render.emit_table(
        [
            {"at": h["at"], "kind": h["kind"], "actor": h["actor"], "detail": _detail(h)}
            for h in story["history"]
        ],
        ("at", "kind", "actor", "detail"),
        title="history",
    )
    if story["links"]:
        # a CRM with people and companies names the lead's contact and account too
        parents = tuple(k for k in ("contact", "account") if any(r[k] for r in story["links"]))
        render.emit_table(
            story["links"],
            ("target", "external_id", *parents, "state", "pushed_stage", "pushed_at"),
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
    if event["kind"] == "grade":
        return f"grade {data.get('from')} → {data.get('to')}: {data.get('reason')}"
    if event["kind"] == "stage_refused":
        return (
            f"refused {data.get('stage')} (kept {data.get('kept')}): {data.get('reason')}; "
            "the true stage is sent back"
        )
    if event["kind"] == "push":
        outcome = "ok" if data.get("ok") else data.get("error")
        detail = f"pushed {data.get('stage')} to {data.get('target')}: {outcome}"
        if data.get("created"):
            detail += " (created)"
        kept = (data.get("kept") or {}).get("fields") or []
        if kept:
            detail += f"; kept the CRM's {', '.join(kept)}"
        for name, why in (data.get("dropped") or {}).items():
            detail += f"; {name} not sent: {why}"
        return detail
    if event["kind"] == "dead_letter":
        why = f": {data['reason']}" if data.get("reason") else ""
        letter = f"dead letter {data.get('dead_letter')} ({data.get('target')})"
        return f"{letter} {data.get('resolution')}{why}"
    if event["kind"] == "person":
        score = data.get("score") or {}
        return (
            f"filled from the person's other leads: {', '.join(data.get('filled') or [])}; "
            f"score {score.get('to')}"
        )
    return str(data)


@leads_app.command("quarantine")
def leads_quarantine(
    ctx: typer.Context,
    reason: Annotated[
        QuarantineReason | None, typer.Option(help="Only this reason.", case_sensitive=False)
    ] = None,
    format: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Raw leads kept in landing but not turned into leads, with the reason and the fix."""
    with _ctx(ctx).store().connect() as conn:
        rows = views.list_quarantine(conn, reason.value if reason else None)
    columns = ("raw_lead_id", "source", "reason", "field", "message", "fix", "at")
    if format is Format.json:
        render.emit_json(rows)
    elif format is Format.csv:
        render.emit_csv(rows, columns)
    else:
        render.emit_table(rows, columns, title=f"{len(rows)} quarantined raw leads")


@leads_app.command("reprocess")
def leads_reprocess(
    ctx: typer.Context,
    raw_ids: Annotated[
        list[int] | None, typer.Argument(metavar="[RAW_ID]...", help="Quarantined raw leads.")
    ] = None,
    reason: Annotated[
        QuarantineReason | None,
        typer.Option(help="Every quarantined raw lead with this reason.", case_sensitive=False),
    ] = None,
) -> None:
    """Process quarantined raw leads again, after changing the config (e.g. `test_leads:
    deliver`) or upgrading leadbridge. One still at fault is quarantined again."""
    if not raw_ids and reason is None:
        _usage("say which: RAW_ID..., or --reason REASON (see: leadbridge leads quarantine)")
    done = operations.reprocess_quarantined(
        _ctx(ctx).settings, _ctx(ctx).store(), raw_ids=raw_ids or None, reason=reason, actor="cli"
    )
    render.console.print(f"{done.released} quarantined raw lead(s) processed again")
    _print_ingest(done.report, _ctx(ctx).settings.test_leads)
    if not done.released or done.report.needs_attention:
        raise typer.Exit(EXIT_ATTENTION)


# --- status ----------------------------------------------------------------------------


@app.command("status")
def status_command(
    ctx: typer.Context,
    format: Annotated[ShowFormat, typer.Option("--format")] = ShowFormat.table,
) -> None:
    """Cursors, landing and quarantine counts, the last test lead, leads by stage, outbox,
    and every replica (`leadbridge run` process) with what it is doing."""
    settings = _ctx(ctx).settings
    with _ctx(ctx).store().connect() as conn:
        data = status.status(  # the store's reads alone: views' imports cost start-up
            conn,
            [s.name for s in settings.sources],
            [t.name for t in settings.targets],
            settings.cluster.stalled_after,
            [c.name for c in settings.alerts.channels],
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
    raw, held = data["raw_leads"], data["quarantine"]
    out.print(
        f"raw leads: {sum(raw.values())}"
        + (f" ({render.counts_text(raw)})" if raw else "")
        + (f"; quarantined for: {render.counts_text(held)}" if held else "")
    )
    out.print(f"last Microsoft test lead: {data['last_test_lead_at'] or 'never'}")
    stages = data["leads"]["by_stage"]
    out.print(
        f"leads: {data['leads']['total']}"
        + (f" ({render.counts_text(stages, order=[s.value for s in Stage])})" if stages else "")
    )
    if data["erasures_pending"]:
        out.print(f"erasures waiting on a target: {data['erasures_pending']}")
    if data["targets"]:
        paused = any(v["paused"] for v in data["targets"].values())
        render.emit_table(
            [{"target": k, **v, **_pause_cells(v["paused"])} for k, v in data["targets"].items()],
            ("target", "outbox", "dead_letters", *(("paused_until", "why") if paused else ())),
            title="targets",
        )
    if data.get("alerts"):
        render.emit_table(
            [{"channel": k, **v} for k, v in data["alerts"].items()],
            ("channel", "pending", "last_success_at", "last_failure_at", "last_error"),
            title="alert channels",
        )
    if data["queue"] is not None:
        out.print(
            f"cluster queue: {data['queue']['todo']} waiting, {data['queue']['doing']} running"
        )
    if data["replicas"]:
        render.emit_table(
            [{**r, "doing": ", ".join(r["doing"]) or "idle"} for r in data["replicas"]],
            ("name", "engine", "state", "heartbeat_at", "doing"),
            title="replicas",
        )


def _pause_cells(paused: dict[str, str] | None) -> dict[str, str]:
    """A vendor's pause as two cells: when it ends and the vendor's reason; blank if none."""
    if paused is None:
        return {"paused_until": "", "why": ""}
    until = datetime.fromisoformat(paused["until"]).isoformat(timespec="seconds")
    return {"paused_until": until, "why": paused["why"]}


# --- config and db ---------------------------------------------------------------------


@config_app.command("check")
def config_check(
    ctx: typer.Context,
    online: Annotated[
        bool, typer.Option("--online", help="Also read each CRM's own schema.")
    ] = False,
    create_missing: Annotated[
        bool,
        typer.Option(
            "--create-missing",
            help="With --online: create the HubSpot properties leadbridge needs.",
        ),
    ] = False,
) -> None:
    """Validate the configuration; every problem is listed with its key and fix (exit 2).
    Warnings (a source's file that isn't there yet) are listed too, and leave exit 0.

    --online also opens the store, and reads each target's metadata (Salesforce describe
    of Lead, HubSpot contact properties, Dataverse EntityDefinitions of lead) and reports
    unknown fields, picklist values that would be refused, values that would be cut, and
    missing keys or properties.
    """
    settings = _ctx(ctx).settings
    render.console.print(
        f"configuration OK: {len(settings.sources)} source(s), "
        f"{len(settings.targets)} target(s), store {settings.masked()['store']}"
    )
    warnings = config_file.config_warnings(settings)
    if warnings:
        render.console.print(f"{len(warnings)} warning(s):")
    for warning in warnings:
        render.console.print(f"  {warning.key}: {warning.message}\n      fix: {warning.fix}")
    if not online:
        return
    problems: list[Any] = _store_problems_online(settings.store)
    for config in settings.target_configs():
        target = connectors.build(config, placeholder=settings.placeholder)
        if not isinstance(target, connectors.SchemaChecker):
            render.console.print(f"{config.name}: no schema to check ({config.kind})")
            continue
        try:
            found = target.schema_problems(create_missing=create_missing)
        except connectors.ConnectorError as exc:
            render.console.print(f"{config.name}: could not read its schema: {exc}")
            problems.append(exc)
            continue
        for note in target.schema_notes:  # what the check learnt or did (e.g. created)
            render.console.print(f"{config.name}: {note}")
        render.console.print(f"{config.name}: {len(found) or 'no'} schema problem(s)")
        for problem in found:
            render.console.print(f"  {problem.key}: {problem.message}\n      fix: {problem.fix}")
        problems.extend(found)
    if problems:
        raise typer.Exit(EXIT_USAGE)


def _store_problems_online(url: str) -> list[store_db.StoreUnavailable]:
    """Connect to the store once (no migration): down, refused, or the wrong password."""
    try:
        store = repo.Store(url, upgrade=False)
        try:
            revision = store.check()
        finally:
            store.dispose()
    except store_db.StoreUnavailable as exc:
        render.console.print(
            f"store: can't be opened: {logs.redact(exc.reason)}\n      fix: {exc.fix}"
        )
        return [exc]
    render.console.print(f"store: reachable, at revision {revision or 'none (empty)'}")
    return []


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective configuration (file + environment) as JSON, secrets masked;
    durations as the YAML writes them (`2m`), keys left unset left out."""
    render.emit_json(_without_nulls(_ctx(ctx).settings.masked()))


def _without_nulls(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _without_nulls(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [_without_nulls(v) for v in data]
    return data


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply the store's migrations (also done at every start)."""
    store = _ctx(ctx).store(upgrade=False)
    try:
        before = store.check()
    except store_db.StoreUnavailable as exc:
        store_failed(store.url, exc)
    migrate.upgrade(store.engine)
    render.console.print(
        f"store at revision {migrate.current_revision(store.engine)} (was {before or 'empty'})"
    )


@db_app.command("prune")
def db_prune(ctx: typer.Context) -> None:
    """Redact personal data from raw leads past their retention (`retention:`; the daemon
    does it daily). Reports give the same figures before and after."""
    settings = _ctx(ctx).settings
    done = retention.prune(_ctx(ctx).store(), settings.retention, repo.utcnow())
    kept = settings.retention
    render.console.print(
        f"redacted {done.raw_redacted} raw lead(s) older than {kept.raw_days or '∞'} days and "
        f"{done.quarantine_redacted} quarantined one(s) older than "
        f"{kept.quarantine_days or '∞'} days"
    )


@app.command("run")
def run_command(ctx: typer.Context) -> None:
    """The daemon: the scheduler plus the HTTP server (health, metrics, marketplace webhook).

    With `engine: cluster` this is one replica; start as many as you like on one store.
    A config with no source and no target is refused (exit 2): it would run, healthy, and
    move nothing."""
    from leadbridge.core.app import daemon

    settings = _ctx(ctx).settings
    if not settings.sources and not settings.targets:
        fail(
            "nothing to run: the configuration has no sources and no targets",
            "add where leads come from under `sources:` and where they go under `targets:` "
            "(config/leadbridge.example.yaml)",
        )
    store = _ctx(ctx).store()
    for warning in config_file.config_warnings(
        settings
    ):  # a drop folder's file may come later: go on
        log.warning(
            "source can't be read yet",
            extra={"key": warning.key, "problem": warning.message, "fix": warning.fix},
        )
    raise typer.Exit(daemon.run(settings, store))


@app.command("demo")
def demo_command(
    ctx: typer.Context,
    workdir: Annotated[
        Path | None,
        typer.Option(
            help="Keep the demo's store and config here (default: a new temporary folder). "
            "Each run replaces the store of the last one."
        ),
    ] = None,
) -> None:
    """Sample marketplace leads through the whole pipeline, no credentials needed; ends with
    the commands to try next on what it made."""
    from leadbridge.core.app.demo import run_demo

    raise typer.Exit(run_demo(workdir))


def _usage(message: str) -> NoReturn:
    render.console.print(f"{message}")
    raise typer.Exit(EXIT_USAGE)


def main() -> None:
    app(prog_name="leadbridge")  # also as `python -m leadbridge.core`
