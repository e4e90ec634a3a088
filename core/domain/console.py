"""The operator console's configuration (issue 19, docs/console.md).

Off unless `console: {enabled: true}`: a daemon that never asked for a browser-facing
surface must not grow one on upgrade.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ConsoleSettings(BaseModel):
    """`console:` in the config file."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    # a signed-in session lasts this long; then the login page again
    session_hours: float = Field(default=8.0, gt=0, le=24 * 7)
    # Secure cookies: on whenever the console is reached over TLS (a proxy in front);
    # off only for plain-HTTP loopback use and tests.
    secure_cookies: bool = True
