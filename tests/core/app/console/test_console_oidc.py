"""Signing in to the console with Entra ID (OpenID Connect, authorization code flow with
PKCE through msal): the provider's discovery document and token endpoint are `responses`
fixtures in the shapes Microsoft documents; the browser is werkzeug's test client, which
calls the app in-process (no HTTP), so `responses` sees only msal's calls."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from sqlalchemy import select
from werkzeug.test import Client

from leadbridge.core.app.console import auth, oidc
from leadbridge.core.app.console.app import Console
from leadbridge.core.domain.console import ConsoleSettings, OidcSettings
from leadbridge.core.store.tables import console_audit

from .conftest import World, csrf_of

# the console asks for the answer in the query string on purpose (oidc.py says why)
pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")

TENANT = "6f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f"
CLIENT_ID = "2b8e6a1c-7d3f-4e5a-9b0c-1d2e3f4a5b6c"
SECRET = "Entra-client-s3cret~value"
REDIRECT = "http://localhost:8080/console/oidc/callback"
AUTHORITY = f"https://login.microsoftonline.com/{TENANT}"
ISSUER = f"{AUTHORITY}/v2.0"
TOKEN_URL = f"{AUTHORITY}/oauth2/v2.0/token"
ACCESS_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.access-token-never-logged.sig"

# The tenant's OpenID Provider configuration document, as documented in
# https://learn.microsoft.com/entra/identity-platform/v2-protocols-oidc
# ("Find your app's OpenID configuration document URI", sample response)
DISCOVERY = {
    "authorization_endpoint": f"{AUTHORITY}/oauth2/v2.0/authorize",
    "token_endpoint": TOKEN_URL,
    "token_endpoint_auth_methods_supported": [
        "client_secret_post",
        "private_key_jwt",
        "client_secret_basic",
    ],
    "jwks_uri": f"{AUTHORITY}/discovery/v2.0/keys",
    "response_modes_supported": ["query", "fragment", "form_post"],
    "subject_types_supported": ["pairwise"],
    "id_token_signing_alg_values_supported": ["RS256"],
    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
    "scopes_supported": ["openid", "profile", "email", "offline_access"],
    "issuer": ISSUER,
    "request_uri_parameter_supported": False,
    "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
    "end_session_endpoint": f"{AUTHORITY}/oauth2/v2.0/logout",
    "http_logout_supported": True,
    "frontchannel_logout_supported": True,
    "claims_supported": [
        *("sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce"),
        *("preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"),
    ],
    "tenant_region_scope": "EU",
    "cloud_instance_name": "microsoftonline.com",
    "cloud_graph_host_name": "graph.windows.net",
    "msgraph_host": "graph.microsoft.com",
    "rbac_url": "https://pas.windows.net",
}


def id_token(**claims: Any) -> str:
    """An id_token as the token endpoint returns it: a JWT whose claims msal decodes
    without checking the signature (the response came over TLS), so this one is not
    signed. Claims as in https://learn.microsoft.com/entra/identity-platform/id-token-claims-reference
    (v2.0: aud, iss, iat, nbf, exp, name, nonce, oid, preferred_username, roles, sub, tid, ver)."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    header = {"typ": "JWT", "alg": "RS256", "kid": "test-key"}
    return f"{part(header)}.{part(claims)}.c2lnbmF0dXJlLW5vdC1jaGVja2Vk"


@dataclass
class Entra:
    """The provider, as far as msal talks to it: what the token endpoint returns next,
    and the requests it got."""

    mock: responses.RequestsMock
    claims: dict[str, Any] = field(default_factory=dict)
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)
    answer: dict[str, Any] | None = None  # a token-endpoint error instead of tokens
    down: bool = False  # the token endpoint does not answer at all

    def token_endpoint(self, request: Any) -> tuple[int, dict[str, str], str]:
        # the token response documented in
        # https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow
        # ("Successful response" / "Error response" of "Redeem a code for an access token")
        self.token_requests.append(parse_qs(request.body))
        if self.down:
            raise requests.ConnectionError("connection refused")
        if self.answer is not None:
            return 400, {"Content-Type": "application/json"}, json.dumps(self.answer)
        body = {
            "access_token": ACCESS_TOKEN,
            "token_type": "Bearer",
            "expires_in": 3599,
            "scope": "openid profile",
            "id_token": id_token(**self.claims),
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(body)


@pytest.fixture
def entra(world: World) -> Iterator[Entra]:
    oidc_settings = OidcSettings(
        tenant_id=TENANT,
        client_id=CLIENT_ID,
        client_secret=SECRET,  # type: ignore[arg-type]  # pydantic makes it a SecretStr
        redirect_url=REDIRECT,
    )
    console = ConsoleSettings(enabled=True, secure_cookies=False, oidc=oidc_settings)
    settings = world.settings.model_copy(update={"console": console})
    world.console = Console(settings, world.store)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru("http://127.0.0.1")  # the sandboxes on loopback, if anything calls
        # https://learn.microsoft.com/entra/identity-platform/v2-protocols-oidc
        mock.get(f"{AUTHORITY}/v2.0/.well-known/openid-configuration", json=DISCOVERY)
        provider = Entra(mock)
        mock.add_callback(responses.POST, TOKEN_URL, callback=provider.token_endpoint)
        yield provider


def start(http: Client, next_path: str = "/console/") -> dict[str, str]:
    """Click "Sign in with Microsoft": the authorize request's parameters."""
    response = http.get(f"/console/oidc/start?next={next_path}")
    assert response.status_code == 303, response.text
    location = urlsplit(response.headers["Location"])
    assert (
        f"{location.scheme}://{location.netloc}{location.path}"
        == (DISCOVERY["authorization_endpoint"])
    )
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def good_claims(asked: dict[str, str], **changes: Any) -> dict[str, Any]:
    """What the provider puts in the id_token for this request (its nonce echoed)."""
    claims = {
        "ver": "2.0",
        "iss": ISSUER,
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "aud": CLIENT_ID,
        "exp": 4102444800,  # 2100-01-01: not expired whenever the test runs
        "iat": 1700000000,
        "nbf": 1700000000,
        "name": "Olga Example",
        "preferred_username": "olga@contoso.example",
        "oid": "00000000-0000-0000-66f3-3332eca7ea81",
        "tid": TENANT,
        "nonce": asked["nonce"],
        "roles": ["operator"],
    }
    return claims | changes


def callback(http: Client, **answer: str) -> Any:
    query = "&".join(f"{k}={v}" for k, v in answer.items())
    return http.get(f"/console/oidc/callback?{query}")


def _audit(world: World) -> list[tuple[str, str, str]]:
    with world.store.connect() as conn:
        rows = conn.execute(select(console_audit).order_by(console_audit.c.id))
        return [(r.actor, r.action, json.dumps(r.detail)) for r in rows]


def _cookies(response: Any, name: str) -> list[str]:
    return [c for c in response.headers.getlist("Set-Cookie") if c.startswith(f"{name}=")]


def test_the_login_page_offers_microsoft_only_when_configured(world: World) -> None:
    plain = world.client()
    page = plain.get("/console/login")
    assert "Sign in with Microsoft" not in page.text and 'id="username"' in page.text
    assert plain.get("/console/oidc/start").status_code == 404
    assert plain.get("/console/oidc/callback?code=x&state=y").status_code == 404


def test_the_login_page_links_to_microsoft_beside_the_form(world: World, entra: Entra) -> None:
    page = world.client().get("/console/login?next=/console/audit")
    assert page.status_code == 200
    assert 'id="entra"' in page.text and "Sign in with Microsoft" in page.text
    assert 'href="/console/oidc/start?next=/console/audit"' in page.text
    assert 'id="username"' in page.text and 'id="password"' in page.text  # local users too


def test_start_redirects_to_the_authorize_url_with_pkce_state_and_nonce(
    world: World, entra: Entra
) -> None:
    http = world.client()
    response = http.get("/console/oidc/start")
    asked = start(http)
    assert asked["client_id"] == CLIENT_ID and asked["response_type"] == "code"
    assert asked["redirect_uri"] == REDIRECT and asked["response_mode"] == "query"
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) >= 43
    assert asked["state"] and asked["nonce"]
    assert "openid" in asked["scope"].split() and "offline_access" not in asked["scope"]
    cookie = _cookies(response, oidc.FLOW_COOKIE)[0]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console/" in cookie
    assert f"Max-Age={oidc.FLOW_S}" in cookie
    # the flow holds state, nonce and the PKCE verifier, never the client secret
    value = cookie.split(";")[0].split("=", 1)[1]
    assert world.console.entra is not None
    flow = world.console.entra.read_flow(value)
    assert flow is not None and flow[0]["state"] and flow[0]["code_verifier"]
    assert SECRET not in json.dumps(flow) and SECRET not in cookie


def test_a_good_answer_signs_in_with_the_app_role(world: World, entra: Entra) -> None:
    http = world.client()
    asked = start(http, "/console/audit")
    entra.claims = good_claims(asked)
    done = callback(http, code="0.AXoA-auth-code", state=asked["state"], session_state="s1")
    assert done.status_code == 200, done.text
    # a page moves on to where the user was going (a redirect would lose the Strict cookie)
    assert 'http-equiv="refresh" content="0;url=/console/audit"' in done.text
    session = _cookies(done, auth.COOKIE)[0]
    assert "HttpOnly" in session and "SameSite=Strict" in session
    spent = _cookies(done, oidc.FLOW_COOKIE)[0]
    assert "Max-Age=0" in spent or "Expires=Thu, 01 Jan 1970" in spent
    # the code was redeemed with the secret and the verifier matching the challenge
    sent = entra.token_requests[0]
    assert sent["code"] == ["0.AXoA-auth-code"] and sent["redirect_uri"] == [REDIRECT]
    assert sent["client_secret"] == [SECRET]
    verifier = sent["code_verifier"][0].encode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
    assert challenge.decode() == asked["code_challenge"]

    page = http.get("/console/audit")
    assert page.status_code == 200
    assert "Sign out olga@contoso.example (operator)" in page.text
    signed = [a for a in _audit(world) if a[1] == "signed in"]
    assert signed == [("olga@contoso.example", "signed in", signed[0][2])]
    assert json.loads(signed[0][2]) == {"role": "operator", "via": "entra id"}
    assert not [a for a in _audit(world) if ACCESS_TOKEN in a[2] or "eyJ" in a[2]]
    # the flow was spent: the same answer again is refused
    again = callback(http, code="0.AXoA-auth-code", state=asked["state"])
    assert again.status_code == 403 and len(entra.token_requests) == 1


def test_a_viewer_role_signs_in_as_a_viewer(world: World, entra: Entra) -> None:
    http = world.client()
    asked = start(http)
    entra.claims = good_claims(asked, roles=["viewer"], preferred_username=None)
    assert callback(http, code="c", state=asked["state"]).status_code == 200
    page = http.get("/console/dead-letters")
    assert "(viewer)" in page.text and "00000000-0000-0000-66f3-3332eca7ea81" in page.text
    refused = http.post(
        "/console/dead-letters/replay", data={"target": "salesforce", "csrf": csrf_of(page.text)}
    )
    assert refused.status_code == 403 and "is a viewer" in refused.text


def test_a_user_without_a_console_role_is_refused(world: World, entra: Entra) -> None:
    http = world.client()
    asked = start(http)
    entra.claims = good_claims(asked, roles=["Reader"])
    refused = callback(http, code="c", state=asked["state"])
    assert refused.status_code == 403
    assert "no console role" in refused.text and "ask the tenant" in refused.text
    assert not _cookies(refused, auth.COOKIE)
    assert http.get("/console/").status_code == 303  # still signed out
    audit = [a for a in _audit(world) if a[1] == "sign-in refused"]
    assert [(a[0], json.loads(a[2])["why"]) for a in audit] == [
        ("olga@contoso.example", "no console role")
    ]


def test_a_forged_answer_with_another_state_is_refused(world: World, entra: Entra) -> None:
    http = world.client()
    asked = start(http)
    entra.claims = good_claims(asked)
    forged = callback(http, code="attackers-code", state="not-" + asked["state"])
    assert forged.status_code == 403 and "start again" in forged.text
    assert not entra.token_requests  # the code was never redeemed
    assert not _cookies(forged, auth.COOKIE)
    refused = [json.loads(a[2]) for a in _audit(world) if a[1] == "sign-in refused"]
    assert refused == [{"via": "entra id", "why": "state mismatch"}]
    # and an answer with no sign-in started in this browser at all
    stranger = world.client()
    alone = callback(stranger, code="attackers-code", state=asked["state"])
    assert alone.status_code == 403 and "No sign-in with Entra ID was started" in alone.text
    assert not entra.token_requests


def test_a_token_for_another_app_or_tenant_is_refused(world: World, entra: Entra) -> None:
    for wrong in (
        {"aud": "another-app"},
        {"iss": "https://login.microsoftonline.com/another/v2.0"},
        {"exp": 1000000000},
        {"nonce": "replayed"},
    ):
        http = world.client()
        asked = start(http)
        entra.claims = good_claims(asked, **wrong)
        refused = callback(http, code="c", state=asked["state"])
        assert refused.status_code == 403, wrong
        assert not _cookies(refused, auth.COOKIE)
    whys = [json.loads(a[2]) for a in _audit(world) if a[1] == "sign-in refused"]
    assert [w.get("checks") for w in whys[:3]] == [["audience"], ["issuer"], ["expiry"]]
    assert whys[3]["why"] == "nonce mismatch"


def test_the_providers_error_is_shown_escaped_and_audited(world: World, entra: Entra) -> None:
    http = world.client()
    asked = start(http)
    # an error redirect as documented in ("Error response" of "Request an authorization code")
    # https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow
    description = (
        "AADSTS50105:+The+signed+in+user+%27olga%40contoso.example%27+is+not+assigned"
        "+<script>alert(1)</script>"
    )
    shown = callback(
        http, error="access_denied", error_description=description, state=asked["state"]
    )
    assert shown.status_code == 401
    assert "access_denied" in shown.text and "AADSTS50105" in shown.text
    assert "<script>alert(1)" not in shown.text and "&lt;script&gt;" in shown.text
    assert not entra.token_requests and not _cookies(shown, auth.COOKIE)
    refused = [json.loads(a[2]) for a in _audit(world) if a[1] == "sign-in refused"]
    assert refused == [
        {"via": "entra id", "why": "provider error", "error": "access_denied"}
        | {"codes": ["AADSTS50105"]}
    ]  # the description, which names the user, stays out of the audit log


def test_the_token_endpoints_error_is_shown(world: World, entra: Entra) -> None:
    http = world.client()
    asked = start(http)
    entra.answer = {  # "Error response" of the token request, same page as above
        "error": "invalid_grant",
        "error_description": "AADSTS70008: The provided authorization code has expired.",
        "error_codes": [70008],
        "timestamp": "2026-12-03 07:35:06Z",
        "trace_id": "0000aaaa-11bb-cccc-dd22-eeeeee333333",
        "correlation_id": "aaaa0000-bb11-2222-33cc-444444dddddd",
    }
    shown = callback(http, code="old", state=asked["state"])
    assert shown.status_code == 401 and "invalid_grant" in shown.text
    assert "AADSTS70008" in shown.text


def test_an_unreachable_provider_leaves_local_sign_in_working(world: World) -> None:
    oidc_settings = OidcSettings(
        tenant_id=TENANT,
        client_id=CLIENT_ID,
        client_secret=SECRET,  # type: ignore[arg-type]
        redirect_url=REDIRECT,
    )
    console = ConsoleSettings(enabled=True, secure_cookies=False, oidc=oidc_settings)
    world.console = Console(world.settings.model_copy(update={"console": console}), world.store)
    with responses.RequestsMock() as mock:  # nothing registered: every call fails
        mock.add_passthru("http://127.0.0.1")
        http = world.client()
        refused = http.get("/console/oidc/start")
        assert refused.status_code == 502 and "could not be reached" in refused.text
    assert http.get("/console/login").status_code == 200


def test_a_token_endpoint_that_does_not_answer_is_a_502(world: World, entra: Entra) -> None:
    http = world.client()
    asked = start(http)
    entra.down = True
    refused = callback(http, code="c", state=asked["state"])
    assert refused.status_code == 502 and "could not be reached" in refused.text
    assert not _cookies(refused, auth.COOKIE)
    whys = [json.loads(a[2]) for a in _audit(world) if a[1] == "sign-in refused"]
    assert whys == [{"via": "entra id", "why": "provider unreachable", "error": "ConnectionError"}]
