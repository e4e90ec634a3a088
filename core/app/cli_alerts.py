"""`leadbridge alerts …`: the alert channels from the command line.

`alerts test [--channel NAME]` sends one test message to each channel (or the one named)
straight through apprise, not through the outbox, and prints what each answered. Exit 0
when every channel took it, 1 when one refused (finished, needs attention), 2 when there
is no channel to test. The answer counts as the channel's last success or failure in
`leadbridge status`. The machinery loads inside the command: the CLI's start stays light.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

alerts_app = typer.Typer(  # plain help, as every group's (cli.py)
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Alert channels: Teams, Slack, email, webhooks.",
)

EXIT_ATTENTION = 1
EXIT_USAGE = 2


class Format(StrEnum):
    table = "table"
    json = "json"


@alerts_app.command("test")
def test_command(
    ctx: typer.Context,
    channel: Annotated[
        str | None, typer.Option("--channel", help="Only this channel (its `name`).")
    ] = None,
    format: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Send a test message to each alert channel and show what each answered."""
    from leadbridge.core.alerts.send import record_answer, send_test
    from leadbridge.core.app import render  # rich: loaded when a command prints, not at start
    from leadbridge.core.store.repo import utcnow

    context: Any = ctx.obj  # cli.Context, made by the root callback
    settings = context.settings
    channels = settings.alerts.channels
    if channel is not None:
        channels = [c for c in channels if c.name == channel]
    if not channels:
        known = ", ".join(c.name for c in settings.alerts.channels) or "none configured"
        render.console.print(
            f"no alert channel {channel!r} (channels: {known})"
            if channel
            else "no alert channels configured — add `alerts:` (docs/alerts.md)"
        )
        raise typer.Exit(EXIT_USAGE)
    store = context.store()
    rows = []
    for entry in channels:
        answer = send_test(settings.alerts, entry)
        record_answer(store, entry.name, answer, utcnow())
        rows.append({"channel": entry.name, "ok": answer.ok, "answer": answer.text})
    if format is Format.json:
        render.emit_json(rows)
    else:
        render.emit_table(rows, ("channel", "ok", "answer"), title="alert channels")
    if not all(r["ok"] for r in rows):
        raise typer.Exit(EXIT_ATTENTION)
