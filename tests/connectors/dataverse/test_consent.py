"""Dataverse opt-outs read back: the lead query and what is made of its rows.

Shapes: learn.microsoft.com/power-apps/developer/data-platform/webapi/query-data-web-api
(`$select`, `$filter` with `ge` / `ne null` / `eq true`, `$orderby`; the answer's `value`
and `@odata.nextLink`); the columns: the lead table reference (donotemail, donotbulkemail,
donotphone, donotfax, donotpostalmail: Boolean, true = "Do Not Allow"; modifiedon).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from leadbridge.connectors.dataverse.sandbox import DataverseSandbox
from leadbridge.connectors.dataverse.target import DataverseConfig, DataverseTarget
from leadbridge.core.connector import ConsentReader, build, sandboxes
from leadbridge.core.domain.models import Lead, Stage
from leadbridge.core.settings import load_settings

ENV = "https://contoso.crm.dynamics.com"
AUTHORITY = "https://login.sovereign.example/tenant-1"  # not a Microsoft host: no discovery
LEADS = f"{ENV}/api/data/v9.2/leads"


def _target() -> DataverseTarget:
    return DataverseTarget(
        DataverseConfig(
            name="d365",
            environment_url=ENV,
            authority=AUTHORITY,
            client_id="app",
            client_secret="secret",
        )
    )


def _authority() -> None:
    token = f"{AUTHORITY}/oauth2/v2.0/token"
    responses.get(
        f"{AUTHORITY}/v2.0/.well-known/openid-configuration",
        json={
            "issuer": f"{AUTHORITY}/v2.0",
            "token_endpoint": token,
            "authorization_endpoint": f"{AUTHORITY}/oauth2/v2.0/authorize",
        },
    )
    responses.post(token, json={"token_type": "Bearer", "expires_in": 3599, "access_token": "t"})


def _row(key: str, modified: str, **flags: bool) -> dict[str, object]:
    columns = ("donotemail", "donotbulkemail", "donotphone", "donotfax", "donotpostalmail")
    return {
        "@odata.etag": 'W/"1234"',
        "leadid": f"7d577253-3ef0-4a0a-bb7f-8335c2596e7{key}",
        "lb_leadkey": key * 32,
        "modifiedon": modified,
        **dict.fromkeys(columns, False),
        **flags,
    }


def test_the_target_declares_it_reads_opt_outs() -> None:
    assert isinstance(_target(), ConsentReader)


@responses.activate
def test_opted_out_leads_across_pages_with_their_channels_and_the_watermark() -> None:
    _authority()
    next_link = f"{LEADS}?$skiptoken=1"
    responses.get(
        next_link,
        json={"value": [_row("b", "2026-05-01T11:00:00Z", donotphone=True, donotemail=True)]},
    )
    responses.get(
        LEADS,
        json={
            "value": [
                _row("a", "2026-05-01T10:00:00Z", donotbulkemail=True),
                _row("c", "2026-05-01T10:30:00Z"),  # nothing withdrawn: no opt-out
            ],
            "@odata.nextLink": next_link,
        },
    )
    found, watermark = _target().opt_outs("2026-05-01T09:00:00+00:00")

    first = parse_qs(urlsplit(str(responses.calls[-2].request.url)).query)
    assert first["$filter"] == [
        "modifiedon ge 2026-05-01T08:55:00Z and lb_leadkey ne null and (donotemail eq true or "
        "donotbulkemail eq true or donotphone eq true or donotfax eq true or "
        "donotpostalmail eq true)"
    ]
    assert first["$orderby"] == ["modifiedon asc"]
    assert [(o["lead_key"], o["channels"]) for o in found] == [
        ("a" * 32, ["bulk_email"]),
        ("b" * 32, ["email", "phone"]),
    ]
    assert found[1]["at"] == datetime(2026, 5, 1, 11, tzinfo=UTC)
    assert watermark == "2026-05-01T11:00:00+00:00"


@pytest.fixture
def environment() -> Iterator[DataverseSandbox]:
    sandbox = DataverseSandbox()
    sandbox.start()
    yield sandbox
    sandbox.stop()


def test_a_user_setting_do_not_allow_email_in_the_sandbox_is_read(
    environment: DataverseSandbox,
) -> None:
    settings = load_settings(None, targets=[sandboxes.target_entry("dataverse", environment)])
    target = build(settings.target_configs()[0], placeholder="[not provided]")
    target.upsert(
        [
            Lead(
                lead_key=c * 32, offer_key="c.o", email=f"{c}@x.io", last_name="D", stage=Stage.MQL
            )
            for c in "ab"
        ]
    )
    requests.post(
        f"{environment.url}/_sandbox/stage",
        json={"key": "b" * 32, "columns": {"donotemail": True}},
        timeout=10,
        verify=environment.ca_file,
    ).raise_for_status()

    found, _ = target.opt_outs(None)
    assert [(o["lead_key"], o["channels"]) for o in found] == [("b" * 32, ["email"])]
