"""`console.oidc`: the Entra ID app registration the console signs users in with — one
tenant only, the callback at the console's own path, the client secret from the
environment like every other secret, and never shown."""

from __future__ import annotations

import pytest

from leadbridge.core.domain.console import OIDC_CALLBACK_PATH
from leadbridge.core.settings import ConfigError

TENANT = "6f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f"


def _config(**oidc: str) -> str:
    values = {
        "tenant_id": TENANT,
        "client_id": "2b8e6a1c-7d3f-4e5a-9b0c-1d2e3f4a5b6c",
        "client_secret": "from-the-file",
        "redirect_url": f"https://leads.example.com{OIDC_CALLBACK_PATH}",
    } | oidc
    lines = "".join(f"    {k}: '{v}'\n" for k, v in values.items())
    return f"console:\n  enabled: true\n  oidc:\n{lines}"


def test_oidc_is_off_unless_configured(make_settings) -> None:
    assert make_settings("console: {enabled: true}\n").console.oidc is None


def test_the_defaults_and_the_secret_from_the_environment(make_settings) -> None:
    settings = make_settings(_config(), LEADBRIDGE_CONSOLE__OIDC__CLIENT_SECRET="env-s3cret-value")
    oidc = settings.console.oidc
    assert oidc is not None
    assert oidc.client_secret.get_secret_value() == "env-s3cret-value"
    assert oidc.authority == f"https://login.microsoftonline.com/{TENANT}"
    assert oidc.roles_claim == "roles"
    assert "env-s3cret-value" not in repr(settings) + settings.model_dump_json()


@pytest.mark.parametrize("tenant", ["common", "organizations", "Consumers"])
def test_a_multi_tenant_authority_is_refused(make_settings, tenant: str) -> None:
    with pytest.raises(ConfigError) as refused:
        make_settings(_config(tenant_id=tenant))
    assert "console.oidc.tenant_id" in str(refused.value)
    assert "other directories' admins" in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://leads.example.com/auth/callback",  # not the console's callback
        "http://leads.example.com/console/oidc/callback",  # plain HTTP off loopback
        "/console/oidc/callback",  # not absolute
        "https://leads.example.com/console/oidc/callback?x=1",
    ],
)
def test_the_redirect_url_must_be_the_consoles_callback(make_settings, url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        make_settings(_config(redirect_url=url))
    assert "console.oidc.redirect_url" in str(refused.value)


def test_loopback_may_use_plain_http_and_another_cloud(make_settings) -> None:
    settings = make_settings(
        _config(
            redirect_url=f"http://localhost:8080{OIDC_CALLBACK_PATH}",
            authority_host="https://login.microsoftonline.us/",
        )
    )
    assert settings.console.oidc is not None
    assert settings.console.oidc.authority == f"https://login.microsoftonline.us/{TENANT}"
