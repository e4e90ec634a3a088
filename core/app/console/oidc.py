"""Sign-in with Entra ID: OpenID Connect's authorization code flow with PKCE, through msal.

Why it is built this way (docs/console.md, "Entra ID"):
- msal does the protocol: the discovery document, the authorize URL with `state`, a
  `nonce` and the PKCE challenge, the state check on the way back, redeeming the code with
  the client secret and the PKCE verifier, and the nonce check in the id_token.
- The flow (state, nonce, PKCE verifier, redirect URI; never the client secret) waits in a
  signed cookie, not a server-side row: every replica can finish a sign-in another one
  started, and nothing is left to clean up. It lives 10 minutes and is spent on the
  callback, whatever the outcome. SameSite=Lax, not Strict like the console's other
  cookies: the callback is a top-level navigation coming from the provider's site, and a
  Strict cookie would not come with it.
- msal no longer validates the id_token (msal 1.38, its issue #911): it only decodes the
  claims of the token it got straight from the token endpoint over TLS, which OpenID
  Connect Core 3.1.3.7 (6) accepts in place of checking the signature. So the audience,
  issuer, tenant and expiry are checked here.
- The role comes from the id_token's app roles (`roles`), assigned to users or groups in
  the tenant's enterprise application: `operator` wins over `viewer`; neither is refused.
- The answer comes back in the query string (`response_mode=query`), not as a form post:
  a cross-site POST would carry the flow cookie only with SameSite=None, which needs
  Secure, which plain-HTTP loopback use lacks. The code in the URL is worth nothing once
  seen: it is bound to the PKCE verifier and the client secret, redeemed at once and
  single-use, and no Referer leaves the console (`Referrer-Policy: same-origin`, no
  third-party content). msal's warning recommending form_post is silenced for that reason.
- No token is kept: msal's token cache is replaced by one that forgets, and
  `offline_access` is not asked for, so no refresh token is even issued.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msal  # type: ignore[import-untyped]  # msal ships no type information
import requests
from itsdangerous import BadSignature, URLSafeTimedSerializer

from leadbridge.core.app.console.auth import NAME_MAX, Role
from leadbridge.core.domain.console import OidcSettings
from leadbridge.core.support import logs

FLOW_COOKIE = "leadbridge_console_oidc"
FLOW_S = 10 * 60  # from the click to the provider's answer; then start again
_TIMEOUT_S = 10  # per call to the provider (discovery, token endpoint)
_SKEW_S = 120  # clock difference tolerated on `exp`, as msal's own checks allow
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_PROVIDER_CODE = re.compile(r"\bAADSTS\d+\b")
warnings.filterwarnings(  # query mode is chosen, and why: the module's docstring
    "ignore", message="response_mode='form_post' is recommended", category=UserWarning
)


class SignInRefused(Exception):
    """A sign-in through the provider that does not go through: `why` for the page (may
    quote the provider's own words), `detail` for the audit log (no personal data, no
    token), `status` for the answer, `actor` when the user is known by then."""

    def __init__(
        self,
        why: str,
        detail: dict[str, Any],
        *,
        status: int = 403,
        actor: str = "(unknown)",
    ) -> None:
        super().__init__(why)
        self.why = why
        self.detail = {"via": "entra id"} | detail
        self.status = status
        self.actor = actor


@dataclass(frozen=True)
class Identity:
    """Who signed in, as the session and the audit log name them."""

    user: str
    role: Role


class _Forgetful(msal.TokenCache):  # type: ignore[misc]  # msal's classes are untyped
    """A token cache that keeps nothing: the console needs the id_token's claims once."""

    def add(self, event: Any, now: Any = None) -> None:
        return None


def _msal_app(settings: OidcSettings) -> Any:
    """The confidential client; builds fetch the tenant's discovery document."""
    return msal.ConfidentialClientApplication(
        settings.client_id,
        client_credential=settings.client_secret.get_secret_value(),
        authority=settings.authority,
        token_cache=_Forgetful(),
        exclude_scopes=["offline_access"],
        timeout=_TIMEOUT_S,  # a console thread waits this long for the provider, no longer
    )


@dataclass
class EntraSignIn:
    """Starts and finishes sign-ins for one app registration. The msal client is made on
    the first sign-in, not at start-up: an unreachable provider must not keep the daemon
    (or the local sign-in) from starting, and a later sign-in tries again."""

    settings: OidcSettings
    signing_key: str
    make_client: Callable[[OidcSettings], Any] = _msal_app
    _client: Any = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        logs.register_secret(self.settings.client_secret.get_secret_value())
        self._flows = URLSafeTimedSerializer(
            self.signing_key,
            salt="leadbridge.console.oidc",
            signer_kwargs={"digest_method": hashlib.sha256},
        )

    def _app(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    self._client = self.make_client(self.settings)
                except Exception as exc:  # requests' errors, msal's ValueError
                    raise _unreachable(exc) from None
            return self._client

    def start(self, next_path: str) -> tuple[str, str]:
        """The provider's authorize URL to send the browser to, and the flow cookie."""
        flow: dict[str, Any] = self._app().initiate_auth_code_flow(
            scopes=[], redirect_uri=self.settings.redirect_url, response_mode="query"
        )
        auth_uri = str(flow.pop("auth_uri"))
        return auth_uri, self._flows.dumps({"flow": flow, "next": next_path})

    def read_flow(self, cookie: str | None) -> tuple[dict[str, Any], str] | None:
        """The flow and the page to return to, from a valid, unexpired cookie."""
        if not cookie:
            return None
        try:
            data: Any = self._flows.loads(cookie, max_age=FLOW_S)
            return dict(data["flow"]), str(data["next"])
        except (BadSignature, KeyError, TypeError, ValueError):
            return None

    def finish(self, flow: dict[str, Any], answer: Mapping[str, str]) -> Identity:
        """The provider's answer checked against the flow and redeemed: who and what role.
        Raises SignInRefused for a forged or stale answer, the provider's error, a token
        that is not for us, or a user without a console role."""
        try:
            # one value per parameter (a query string's first), as msal expects
            fields = {name: answer[name] for name in answer}
            result: dict[str, Any] = self._app().acquire_token_by_auth_code_flow(flow, fields)
        except requests.RequestException as exc:  # the token endpoint did not answer
            raise _unreachable(exc) from None
        except ValueError:  # msal: the state does not match the flow (forged or crossed)
            raise SignInRefused(
                "This sign-in answer does not belong to a sign-in started in this browser: "
                "start again",
                {"why": "state mismatch"},
            ) from None
        except RuntimeError:  # msal: the id_token's nonce is not the flow's
            raise SignInRefused(
                "The sign-in could not be verified: start again", {"why": "nonce mismatch"}
            ) from None
        if "error" in result:
            raise _provider_error(result)
        claims = result.get("id_token_claims")
        if not isinstance(claims, dict):
            raise SignInRefused(
                "The provider sent no identity: start again", {"why": "no id_token"}
            )
        self._check(claims, self._issuer())
        return self._identity(claims)

    def _issuer(self) -> str | None:
        """The issuer the discovery document announced (msal keeps it on its authority)."""
        issuer = getattr(getattr(self._client, "authority", None), "_issuer", None)
        return issuer if isinstance(issuer, str) else None

    def _check(self, claims: Mapping[str, Any], issuer: str | None) -> None:
        """Audience, issuer, tenant and expiry: what msal leaves to the application."""
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        problems = [
            ("audience", self.settings.client_id not in audiences),
            ("issuer", issuer is not None and claims.get("iss") != issuer),
            (
                "tenant",
                bool(_GUID.match(self.settings.tenant_id))
                and str(claims.get("tid", "")).lower() != self.settings.tenant_id.lower(),
            ),
            (
                "expiry",
                not isinstance(claims.get("exp"), int) or claims["exp"] < time.time() - _SKEW_S,
            ),
        ]
        wrong = [name for name, bad in problems if bad]
        if wrong:
            raise SignInRefused(
                "The provider's identity token is not for this console: start again",
                {"why": "id_token refused", "checks": wrong},
            )

    def _identity(self, claims: Mapping[str, Any]) -> Identity:
        user = str(claims.get("preferred_username") or claims.get("oid") or "")[:NAME_MAX]
        if not user:
            raise SignInRefused("The provider named no user: start again", {"why": "no user"})
        roles = claims.get(self.settings.roles_claim) or []
        roles = [roles] if isinstance(roles, str) else roles
        for role in (Role.operator, Role.viewer):
            if role.value in roles:
                return Identity(user, role)
        raise SignInRefused(
            f"{user} signed in with Entra ID but has no console role: ask the tenant's admin "
            "to assign you the app role `viewer` or `operator` of this app.",
            {"why": "no console role"},
            actor=user,
        )


def _unreachable(exc: Exception) -> SignInRefused:
    return SignInRefused(
        "Entra ID could not be reached: try again, or sign in with a console user name "
        "and password",
        {"why": "provider unreachable", "error": type(exc).__name__},
        status=502,
    )


def _provider_error(result: Mapping[str, Any]) -> SignInRefused:
    """The provider's own error, on the page as it said it (escaped there), in the audit
    log only as codes: its description may name the user."""
    error = str(result.get("error", ""))[:100]
    description = str(result.get("error_description") or "")[:2000]
    codes = sorted(set(_PROVIDER_CODE.findall(description)))
    return SignInRefused(
        f"Entra ID refused the sign-in: {error}. {description}".strip(),
        {"why": "provider error", "error": error, "codes": codes},
        status=401,
    )
