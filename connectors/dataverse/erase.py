"""Dataverse erasure: delete the leads (and the contact) leadbridge created for a person.

Each record is a `DELETE [org]/api/data/v9.2/<set>(<id>)`, which answers 204, or 404 when
the row is not there (learn.microsoft.com/power-apps/developer/data-platform/webapi/update-
delete-entities-using-web-api, "Basic delete"; vendor-facts §1.8) — gone is what was asked.
Up to 1,000 go in one `$batch` with `Prefer: odata.continue-on-error`, each with its own
status (execute-batch-operations-using-web-api), leads before contacts, so a lead is never
left pointing at a contact deleted under it.

The id is the one Dataverse gave: the `OData-EntityId` URL of the upsert
(`…/leads(<guid>)`), a bare GUID, or — for a lead written before the id was kept — the lead
key, addressed by leadbridge's alternate key. Only the configured lead and contact tables
are ever addressed. Customer Insights – Journeys keeps consent per email address in
`msdynmkt_contactpointconsent4`, not on the contact (vendor-facts §1.7, §1.8): deleting the
contact leaves those rows, and docs/privacy.md says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from leadbridge.connectors.dataverse import batch
from leadbridge.core.connector import Eraser, FatalError, Outcome, PermanentError
from leadbridge.core.domain.models import ErasureRecord, ErasureResult

BATCH_LIMIT = 1000  # requests per $batch
GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
ENTITY_ID = re.compile(rf"/(?P<set>\w+)\((?P<id>{GUID})\)$")
LEAD_KEY = re.compile(r"^[0-9a-f]{32}$")
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class DataverseEraser(Eraser):
    """The erasure half of DataverseTarget (which supplies `base`, `_batch` and the config)."""

    name: str
    config: Any
    base: str
    _batch: Callable[[list[batch.Part]], list[batch.Part]]

    def erase(self, records: Sequence[ErasureRecord]) -> list[ErasureResult]:
        """Delete the records in `$batch`es of 1,000, leads first; one answer each, in order."""
        results: dict[str, ErasureResult] = {}
        asked: list[tuple[ErasureRecord, batch.Part]] = []
        for record in sorted(records, key=lambda r: r.kind != "lead"):
            address = self._erasure_address(record)
            if address is None:
                results[record.external_id] = _result(
                    record,
                    Outcome.PERMANENT,
                    "not a record of this environment's lead or contact table",
                )
            else:
                asked.append((record, batch.Part(method="DELETE", url=f"{self.base}/{address}")))
        for start in range(0, len(asked), BATCH_LIMIT):
            chunk = asked[start : start + BATCH_LIMIT]
            results.update(
                zip((r.external_id for r, _ in chunk), self._delete_records(chunk), strict=True)
            )
        return [results[record.external_id] for record in records]

    def _erasure_address(self, record: ErasureRecord) -> str | None:
        """`<set>(<guid>)`, or `<leads>(<key column>='<key>')`, of a table leadbridge writes."""
        config = self.config
        table = config.entity_set if record.kind == "lead" else config.contact_entity_set
        found = ENTITY_ID.search(urlsplit(record.external_id).path)
        if found and found["set"] in (config.entity_set, config.contact_entity_set):
            return f"{found['set']}({found['id']})"
        if re.fullmatch(GUID, record.external_id):
            return f"{table}({record.external_id})"
        if record.kind == "lead" and LEAD_KEY.match(record.external_id):
            key = quote(batch.odata_string(record.external_id), safe="'")
            return f"{table}({config.key_column}={key})"
        return None

    def _delete_records(self, chunk: list[tuple[ErasureRecord, batch.Part]]) -> list[ErasureResult]:
        try:
            answers = self._batch([part for _, part in chunk])
        except PermanentError as exc:  # the $batch itself refused: said why, per record
            return [_result(record, Outcome.PERMANENT, str(exc)) for record, _ in chunk]
        if len(answers) != len(chunk):
            why = f"$batch answered {len(answers)} of {len(chunk)}"
            return [_result(record, Outcome.RETRYABLE, why) for record, _ in chunk]
        return [
            self._erasure_answer(record, a) for (record, _), a in zip(chunk, answers, strict=True)
        ]

    def _erasure_answer(self, record: ErasureRecord, answer: Any) -> ErasureResult:
        status = answer.status if isinstance(answer, batch.Part) else 0
        if 200 <= status < 300 or status == 404:
            return ErasureResult(external_id=record.external_id, ok=True)
        body = answer.body if isinstance(answer, batch.Part) else None
        error = body.get("error", {}) if isinstance(body, dict) else {}
        why = f"{status} {error.get('code', '')}: {error.get('message', body)}"
        if status in (401, 403):
            raise FatalError(
                f"{self.name}: Dataverse refused the delete ({why}): the application user's "
                "security role needs Delete on lead and contact"
            )
        outcome = Outcome.RETRYABLE if status in RETRYABLE_STATUS else Outcome.PERMANENT
        return _result(record, outcome, why)


def _result(record: ErasureRecord, outcome: Outcome, why: str) -> ErasureResult:
    return ErasureResult(external_id=record.external_id, ok=False, error_class=outcome, error=why)
