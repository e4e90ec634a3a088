"""`leadbridge rescore`: the daily fit × engagement rescore, run once by hand.

The daemon runs the same job every day (core/sync/rescore.py); this runs it now, or as of
`--now` — a date to see where the grid will stand, or a test's clock. Only typer is loaded
when the CLI starts: the job and the CLI's helpers are imported when the command runs.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import typer


class RescoreFormat(StrEnum):
    table = "table"
    json = "json"


def _as_of(value: str | None) -> datetime | None:
    """An ISO 8601 date or time; without a zone, UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date; write e.g. 2026-12-31 or 2026-12-31T08:00:00Z",
            param_hint="--now",
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def rescore_command(
    ctx: typer.Context,
    now: Annotated[
        str | None,
        typer.Option(help="Score as of this time (ISO 8601, UTC unless a zone is given)."),
    ] = None,
    format: Annotated[RescoreFormat, typer.Option("--format")] = RescoreFormat.table,
) -> None:
    """Recompute fit × engagement scores as time passes: record each grade change, queue a
    push only where a CRM's values change, recycle stale MQLs (`recycle_after`)."""
    from leadbridge.core.app import cli
    from leadbridge.core.app.render import console, emit_json, safe
    from leadbridge.core.sync.rescore import rescore

    as_of = _as_of(now)
    context = cli._ctx(ctx)
    settings = context.settings
    if not settings.qualification.graded:
        cli.stderr_console.print(
            "qualification has no fit/engagement: scores don't change with time, nothing to do"
        )
    report = rescore(context.store(), settings, now=as_of)
    if format == RescoreFormat.json:
        emit_json({**asdict(report), "needs_attention": report.needs_attention})
    else:
        console.print(
            f"rescored {report.scanned} leads as of {report.now}: {report.regraded} regraded, "
            f"{report.recycled} recycled to nurture, {report.queued} queued for the CRMs, "
            f"{report.failed} failed"
        )
        for key, change in list(report.grades.items())[:20]:
            console.print(f"  {key}: {safe(change)}")
        for problem in report.problems[:20]:
            console.print(f"  {safe(problem)}")
    if report.needs_attention:
        raise typer.Exit(cli.EXIT_ATTENTION)


def register(app: typer.Typer) -> None:
    """Add the scoring commands to the root command."""
    app.command("rescore")(rescore_command)
