"""The operator console's configuration (issue 19, docs/console.md).

Off unless `console: {enabled: true}`: a daemon that never asked for a browser-facing
surface must not grow one on upgrade. Sign-in through an OpenID Connect provider
(`console.oidc`) is off unless configured too; local users keep working beside it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

# the console answers the provider's redirect here (core/app/console/app.py routes it)
OIDC_CALLBACK_PATH = "/console/oidc/callback"
# authorities that sign in users of any tenant: their app roles are assigned by each
# tenant's own admins, so a stranger's admin could hand out `operator` (docs/console.md)
_SHARED_TENANTS = frozenset({"common", "organizations", "consumers"})


class OidcSettings(BaseModel):
    """`console.oidc`: the app registration the console signs users in with."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: str = Field(min_length=1)  # the directory's id (a GUID) or primary domain
    client_id: str = Field(min_length=1)  # the app registration's application (client) id
    client_secret: SecretStr  # LEADBRIDGE_CONSOLE__OIDC__CLIENT_SECRET overrides
    # where the provider sends the browser back: https://HOST/console/oidc/callback,
    # registered as a "Web" redirect URI, character for character
    redirect_url: str
    authority_host: str = "https://login.microsoftonline.com"  # sovereign clouds differ
    roles_claim: str = Field(default="roles", min_length=1)  # the id_token's app roles

    @field_validator("tenant_id")
    @classmethod
    def _one_tenant(cls, value: str) -> str:
        if value.strip().lower() in _SHARED_TENANTS:
            raise ValueError(
                "name your own tenant (its id or domain): a multi-tenant authority would "
                "let other directories' admins grant console roles"
            )
        return value.strip()

    @field_validator("redirect_url")
    @classmethod
    def _our_callback(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError(f"an absolute URL ending in {OIDC_CALLBACK_PATH}")
        if parts.path != OIDC_CALLBACK_PATH or parts.query or parts.fragment:
            raise ValueError(f"the path must be exactly {OIDC_CALLBACK_PATH}")
        if parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1"):
            raise ValueError("https, except for localhost (the provider refuses others)")
        return value

    @field_validator("authority_host")
    @classmethod
    def _https_host(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.netloc or parts.path not in ("", "/"):
            raise ValueError("an https origin, like https://login.microsoftonline.com")
        return value.rstrip("/")

    @property
    def authority(self) -> str:
        """The tenant's authority URL, as msal and the discovery document name it."""
        return f"{self.authority_host}/{self.tenant_id}"


class ConsoleSettings(BaseModel):
    """`console:` in the config file."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    # a signed-in session lasts this long; then the login page again
    session_hours: float = Field(default=8.0, gt=0, le=24 * 7)
    # Secure cookies: on whenever the console is reached over TLS (a proxy in front);
    # off only for plain-HTTP loopback use and tests.
    secure_cookies: bool = True
    # sign-in with an OpenID Connect provider (Entra ID) beside the local users
    oidc: OidcSettings | None = None
