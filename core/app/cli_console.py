"""`leadbridge console …`: the operator console's users (issue 19, docs/console.md).

`console add-user NAME --role viewer|operator` asks for the password twice on a terminal,
and reads it from the first line of stdin otherwise (a script, a secret piped in), so it
never appears in a shell's history or a process list. Adding an existing user replaces its
role and password. Exit 0 when done, 2 when the name or password is unusable.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

console_app = typer.Typer(  # plain help, as every group's (cli.py)
    no_args_is_help=True, rich_markup_mode=None, help="The operator console's users."
)
EXIT_USAGE = 2


class RoleName(StrEnum):
    viewer = "viewer"
    operator = "operator"


def _password() -> str:
    from leadbridge.core.app import render  # rich: loaded when a command runs, not at start

    if sys.stdin.isatty():
        first = typer.prompt("password", hide_input=True)
        if typer.prompt("again", hide_input=True) != first:
            render.console.print("the passwords differ")
            raise typer.Exit(EXIT_USAGE)
        return str(first)
    return sys.stdin.readline().rstrip("\r\n")


@console_app.command("add-user")
def add_user_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user name to sign in with.")],
    role: Annotated[
        RoleName, typer.Option("--role", help="viewer (read) or operator (replay, discard).")
    ],
) -> None:
    """Add a console user, or change one's role and password."""
    from leadbridge.core.app import render
    from leadbridge.core.app.console import auth

    context: Any = ctx.obj  # cli.Context, made by the root callback
    password = _password()
    try:
        new = auth.add_user(context.store(), name, auth.Role(role.value), password)
    except auth.UserError as exc:
        render.console.print(f"{exc} — fix: choose another name or a non-empty password")
        raise typer.Exit(EXIT_USAGE) from None
    render.console.print(f"{'added' if new else 'changed'} {render.safe(name)} ({role.value})")
