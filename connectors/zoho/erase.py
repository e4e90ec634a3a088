"""Zoho CRM erasure: delete the Leads leadbridge created for a forgotten person.

`DELETE /crm/v8/Leads?ids=<id>,<id>&wf_trigger=false` deletes up to 100 records a call and
answers `{"data": [{"code": "SUCCESS", "details": {"id"}, "message": "record deleted",
"status": "success"}, …]}` (zoho.com/crm/developer/docs/api/v8/delete-records.html). Workflow
rules are not triggered: a rule on delete could mail the record's fields somewhere — the
opposite of an erasure. Zoho keeps a deleted record in its recycle bin (60 days), which
docs/privacy.md lists among what leadbridge cannot erase.

INVALID_DATA for a record's id is read as "not there": the ids sent are Zoho's own (checked
to be numbers first), so a valid-looking id Zoho doesn't know was deleted or merged away —
what was asked. INFERRED: Zoho's delete page lists INVALID_DATA for an id it can't use, and
doesn't tell an unknown id from a deleted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from leadbridge.connectors.zoho.mapping import RETRYABLE_CODES
from leadbridge.core.connector import Eraser, Outcome
from leadbridge.core.connector.transport import Transport, response_body
from leadbridge.core.domain.models import ErasureRecord, ErasureResult

DELETE_LIMIT = 100  # "A maximum of 100 records can be deleted per API call"
MODULES = {"lead": "Leads", "contact": "Contacts"}
GONE_CODES = frozenset({"INVALID_DATA"})


class ZohoEraser(Eraser):
    """The erasure half of ZohoTarget (which supplies the transport and `base`)."""

    name: str
    transport: Transport
    base: str

    def erase(self, records: Sequence[ErasureRecord]) -> list[ErasureResult]:
        results: dict[str, ErasureResult] = {}
        for kind, module in MODULES.items():
            ids = [r for r in records if r.kind == kind and r.external_id.isdigit()]
            for start in range(0, len(ids), DELETE_LIMIT):
                chunk = ids[start : start + DELETE_LIMIT]
                results.update(
                    zip(
                        (r.external_id for r in chunk),
                        self._delete_records(module, chunk),
                        strict=True,
                    )
                )
        return [
            results.get(r.external_id) or _result(r, Outcome.PERMANENT, "not a Zoho record id")
            for r in records
        ]

    def _delete_records(self, module: str, chunk: Sequence[ErasureRecord]) -> list[ErasureResult]:
        """One call; each record's answer found by `details.id`, else by its place."""
        query = urlencode({"ids": ",".join(r.external_id for r in chunk), "wf_trigger": "false"})
        response = self.transport.request("DELETE", f"{self.base}/{module}?{query}")
        answer = response_body(response)
        rows = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(rows, list):  # refused as a whole: one error object
            code = answer.get("code") if isinstance(answer, dict) else None
            why = f"HTTP {response.status_code} {code or ''}".strip()
            return [_result(r, Outcome.PERMANENT, why) for r in chunk]
        by_id = {
            str((row.get("details") or {}).get("id")): row
            for row in rows
            if isinstance(row, dict) and isinstance(row.get("details"), dict)
        }
        placed = rows if len(rows) == len(chunk) else [None] * len(chunk)
        return [
            _answer(r, by_id.get(r.external_id) or row)
            for r, row in zip(chunk, placed, strict=True)
        ]


def _answer(record: ErasureRecord, row: Any) -> ErasureResult:
    if not isinstance(row, dict):
        return _result(record, Outcome.RETRYABLE, "no answer for this record")
    code = str(row.get("code") or "")
    if code == "SUCCESS" or code in GONE_CODES:
        return ErasureResult(external_id=record.external_id, ok=True)
    why = f"{code or 'refused'}: {row.get('message') or ''}".strip()
    outcome = Outcome.RETRYABLE if code in RETRYABLE_CODES else Outcome.PERMANENT
    return _result(record, outcome, why)


def _result(record: ErasureRecord, outcome: Outcome, why: str) -> ErasureResult:
    return ErasureResult(external_id=record.external_id, ok=False, error_class=outcome, error=why)
