"""Salesforce erasure: delete the records leadbridge created for a forgotten person.

One sObject Collections DELETE per 200 records (`DELETE /services/data/vXX.X/composite/
sobjects?ids=<id>,<id>&allOrNone=false`, developer.salesforce.com/docs/platform/api-rest/
guide/resources-composite-sobjects-collections-delete.html): a DeleteResult per id, in the
order asked, so a Lead, a Task and a CampaignMember leadbridge made go in one call and one
refusal doesn't stop the others. A record already deleted (ENTITY_IS_DELETED: it sits in the
recycle bin) or that no longer exists (INVALID_CROSS_REFERENCE_KEY: merged, purged) is gone,
which is what was asked. Salesforce keeps a deleted record in the org's recycle bin for 15
days: docs/privacy.md says so (leadbridge deletes through the API, as a user would).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import requests

from leadbridge.connectors.salesforce.mapping import RETRYABLE_CODES
from leadbridge.core.connector import Eraser, FatalError, Outcome
from leadbridge.core.connector.transport import Transport, response_body
from leadbridge.core.domain.models import ErasureRecord, ErasureResult

DELETE_LIMIT = 200  # ids per sObject Collections call
# A record that isn't there any more: deleted (recycle bin) or never found by this id.
GONE_CODES = frozenset({"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"})
RECORD_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")  # 15- or 18-character id


class SalesforceEraser(Eraser):
    """The erasure half of SalesforceTarget (which supplies the transport, the instance URL
    the token response named, and the config)."""

    name: str
    transport: Transport
    config: Any
    _instance: str
    auth_headers: Callable[[bool], Mapping[str, str]]

    def erase(self, records: Sequence[ErasureRecord]) -> list[ErasureResult]:
        """Delete each record by id; an id that is no Salesforce id is refused unasked."""
        results: dict[str, ErasureResult] = {}
        valid = []
        for record in records:
            if RECORD_ID.match(record.external_id):
                valid.append(record)
            else:
                results[record.external_id] = _refused(record, "not a Salesforce record id")
        for start in range(0, len(valid), DELETE_LIMIT):
            chunk = valid[start : start + DELETE_LIMIT]
            results.update(
                zip((r.external_id for r in chunk), self._delete_records(chunk), strict=True)
            )
        return [results[record.external_id] for record in records]

    def _delete_records(self, chunk: Sequence[ErasureRecord]) -> list[ErasureResult]:
        self.auth_headers(False)  # the token response names the instance to ask
        query = urlencode({"ids": ",".join(r.external_id for r in chunk), "allOrNone": "false"})
        base = f"{self._instance}/services/data/v{self.config.api_version}/composite/sobjects"
        response = self.transport.request("DELETE", f"{base}?{query}")
        if response.status_code in (401, 403):  # a throttle 403 was raised by `classify`
            raise FatalError(
                f"{self.name}: Salesforce refused the delete (HTTP {response.status_code} "
                f"{_codes(response)}): the integration user needs Delete on Lead (and Task, "
                "CampaignMember where leadbridge made them)"
            )
        if response.status_code >= 400:  # not well formed: said why, for a person to look at
            why = f"HTTP {response.status_code} {_codes(response)}".strip()
            return [_refused(record, why) for record in chunk]
        answers = response_body(response)
        if not isinstance(answers, list) or len(answers) != len(chunk):
            return [_later(r, "unexpected collections response") for r in chunk]
        return [_result(r, a) for r, a in zip(chunk, answers, strict=True)]


def _result(record: ErasureRecord, answer: Any) -> ErasureResult:
    """One DeleteResult: `{"id", "success", "errors": [{"statusCode", "message", "fields"}]}`."""
    answer = answer if isinstance(answer, dict) else {}
    errors = [e for e in answer.get("errors") or [] if isinstance(e, dict)]
    codes = {str(e.get("statusCode")) for e in errors}
    if answer.get("success") or (codes and codes <= GONE_CODES):
        return ErasureResult(external_id=record.external_id, ok=True)
    message = "; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in errors)
    if codes and codes <= RETRYABLE_CODES:
        return _later(record, message)
    return _refused(record, message or "not deleted")


def _refused(record: ErasureRecord, why: str) -> ErasureResult:
    return ErasureResult(
        external_id=record.external_id, ok=False, error_class=Outcome.PERMANENT, error=why
    )


def _later(record: ErasureRecord, why: str) -> ErasureResult:
    return ErasureResult(
        external_id=record.external_id, ok=False, error_class=Outcome.RETRYABLE, error=why
    )


def _codes(response: requests.Response) -> str:
    body = response_body(response)
    listed = body if isinstance(body, list) else []
    return ",".join(str(e.get("errorCode")) for e in listed if isinstance(e, dict))
