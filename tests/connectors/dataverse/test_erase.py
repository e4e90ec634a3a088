"""Dataverse erasure contract: DELETE of leads and contacts in one `$batch`.

Shapes: learn.microsoft.com/power-apps/developer/data-platform/webapi/update-delete-entities-
using-web-api ("Basic delete": `DELETE [Organization URI]/api/data/v9.2/accounts(<guid>)`,
`HTTP/1.1 204 No Content`; 404 when the row doesn't exist, vendor-facts §1.8), batched as in
execute-batch-operations-using-web-api (`Prefer: odata.continue-on-error`, one
`application/http` answer per request, in order). Error bodies `{"error": {"code",
"message"}}`: web-service-error-codes (0x80040217 ObjectDoesNotExist, 0x80040220
PrivilegeDenied).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses

from leadbridge.connectors.dataverse import batch
from leadbridge.connectors.dataverse.sandbox import DataverseSandbox
from leadbridge.connectors.dataverse.target import DataverseConfig, DataverseTarget
from leadbridge.core.connector import Eraser, FatalError, RetryableError, build, sandboxes
from leadbridge.core.domain.models import ErasureRecord, Lead, Outcome, Stage
from leadbridge.core.settings import load_settings

ENV = "https://contoso.crm.dynamics.com"
AUTHORITY = "https://login.sovereign.example/tenant-1"  # not a Microsoft host: no discovery
TOKEN = f"{AUTHORITY}/oauth2/v2.0/token"
BATCH = f"{ENV}/api/data/v9.2/$batch"
LEAD_ID = "7d577253-3ef0-4a0a-bb7f-8335c2596e70"
CONTACT_ID = "b5e6ad3c-5e6f-4a1b-9c2d-3e4f5a6b7c8d"
GONE_ID = "00000000-0000-0000-0000-000000000404"


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
    responses.get(
        f"{AUTHORITY}/v2.0/.well-known/openid-configuration",
        json={
            "issuer": f"{AUTHORITY}/v2.0",
            "token_endpoint": TOKEN,
            "authorization_endpoint": f"{AUTHORITY}/oauth2/v2.0/authorize",
        },
    )
    responses.post(TOKEN, json={"token_type": "Bearer", "expires_in": 3599, "access_token": "t"})


def _answers(*parts: batch.Part) -> None:
    content_type, body = batch.response(list(parts))
    responses.post(BATCH, body=body, content_type=content_type)


def _sent() -> list[batch.Part]:
    [call] = [c for c in responses.calls if c.request.url == BATCH]
    body = call.request.body
    raw = body if isinstance(body, bytes) else str(body).encode()
    return batch.parse(call.request.headers["Content-Type"], raw, requests_side=True)


def _error(status: int, code: str, message: str) -> batch.Part:
    return batch.Part(status=status, body={"error": {"code": code, "message": message}})


def test_the_target_declares_it_can_erase() -> None:
    assert isinstance(_target(), Eraser)


@responses.activate
def test_leads_then_the_contact_are_deleted_in_one_batch_by_the_ids_dataverse_gave() -> None:
    _authority()
    _answers(
        batch.Part(status=204),
        _error(404, "0x80040217", f"lead With Id = {GONE_ID} Does Not Exist"),
        batch.Part(status=204),
    )
    records = [
        ErasureRecord(kind="contact", external_id=f"{ENV}/api/data/v9.2/contacts({CONTACT_ID})"),
        ErasureRecord(kind="lead", external_id=f"{ENV}/api/data/v9.2/leads({LEAD_ID})"),
        ErasureRecord(kind="lead", external_id=GONE_ID),
    ]
    results = _target().erase(records)

    sent = _sent()
    assert [(p.method, p.url) for p in sent] == [
        ("DELETE", f"{ENV}/api/data/v9.2/leads({LEAD_ID})"),
        ("DELETE", f"{ENV}/api/data/v9.2/leads({GONE_ID})"),
        ("DELETE", f"{ENV}/api/data/v9.2/contacts({CONTACT_ID})"),
    ]
    [call] = [c for c in responses.calls if c.request.url == BATCH]
    assert call.request.headers["Prefer"] == "odata.continue-on-error"
    assert [r.external_id for r in results] == [r.external_id for r in records]
    assert all(r.ok for r in results)


@responses.activate
def test_a_lead_known_by_its_key_is_deleted_by_the_alternate_key() -> None:
    _authority()
    _answers(batch.Part(status=204))
    key = "a" * 32
    [result] = _target().erase([ErasureRecord(kind="lead", external_id=key)])
    assert result.ok
    assert _sent()[0].url == f"{ENV}/api/data/v9.2/leads(lb_leadkey='{key}')"


@responses.activate
def test_a_record_outside_the_lead_and_contact_tables_is_never_addressed() -> None:
    records = [
        ErasureRecord(kind="lead", external_id=f"{ENV}/api/data/v9.2/systemusers({LEAD_ID})"),
        ErasureRecord(kind="contact", external_id="../accounts"),
    ]
    results = _target().erase(records)
    assert [r.error_class for r in results] == [Outcome.PERMANENT, Outcome.PERMANENT]
    assert not responses.calls


@responses.activate
def test_per_record_refusals_are_kept_apart_from_the_records_deleted() -> None:
    _authority()
    _answers(
        _error(429, "0x80072322", "Number of requests exceeded the limit of 6000"),
        _error(400, "0x80040265", "A custom plug-in refused the delete"),
        batch.Part(status=204),
    )
    ids = [LEAD_ID, GONE_ID, CONTACT_ID]
    throttled, refused, done = _target().erase(
        [ErasureRecord(kind="lead", external_id=i) for i in ids]
    )
    assert throttled.error_class is Outcome.RETRYABLE
    assert refused.error_class is Outcome.PERMANENT and "plug-in" in str(refused.error)
    assert done.ok


@responses.activate
def test_a_missing_delete_privilege_stops_the_target() -> None:
    _authority()
    _answers(
        _error(403, "0x80040220", "Principal user is missing prvDeleteLead privilege"),
    )
    with pytest.raises(FatalError, match="Delete on lead"):
        _target().erase([ErasureRecord(kind="lead", external_id=LEAD_ID)])


@responses.activate
def test_an_environment_down_leaves_everything_for_later() -> None:
    _authority()
    target = _target()
    target.transport.max_attempts = 1
    responses.post(BATCH, status=503, json={"error": {"code": "0x0", "message": "down"}})
    with pytest.raises(RetryableError):
        target.erase([ErasureRecord(kind="lead", external_id=LEAD_ID)])


@pytest.fixture
def environment() -> Iterator[DataverseSandbox]:
    sandbox = DataverseSandbox()
    sandbox.start()
    yield sandbox
    sandbox.stop()


def test_against_the_sandbox_the_lead_and_its_contact_are_gone(
    environment: DataverseSandbox,
) -> None:
    settings = load_settings(None, targets=[sandboxes.target_entry("dataverse", environment)])
    target = build(settings.target_configs()[0], placeholder="[not provided]")
    keep, forget = (
        Lead(lead_key=c * 32, offer_key="c.o", email=f"{c}@x.io", last_name="Doe", stage=Stage.MQL)
        for c in "ab"
    )
    [_, pushed] = target.upsert([keep, forget])
    records = [ErasureRecord(kind="lead", external_id=str(pushed.external_id))]
    records += [ErasureRecord(kind="contact", external_id=pushed.related["contact"])]

    first = target.erase(records)
    again = target.erase(records)

    assert all(r.ok for r in first + again)
    assert set(environment.records) == {keep.lead_key}
    assert len(environment.contacts) == 1
