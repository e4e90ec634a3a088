"""HubSpot erasure: GDPR-delete the contacts leadbridge created for a forgotten person.

`POST /crm/v3/objects/contacts/gdpr-delete` with `{"objectId": "<contact id>"}` answers 204
(developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/gdpr/gdpr-delete-
contact): the contact and all associated content are deleted permanently — not the
restorable archive a plain DELETE makes. One call per contact (there is no batch form); a
contact HubSpot doesn't know any more (404) is gone, which is what was asked.

By id, never by email: a GDPR delete by an email HubSpot doesn't hold puts the address on the
portal's blocklist, which is the publisher's decision, not leadbridge's. The blocklist stops
the UI and imports but not the API (vendor-facts §3.7): leadbridge's own suppression list is
what keeps the person from coming back through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from leadbridge.core.connector import Eraser, FatalError, Outcome, RetryableError
from leadbridge.core.connector.transport import Transport, response_body
from leadbridge.core.domain.models import ErasureRecord, ErasureResult


class HubSpotEraser(Eraser):
    """The erasure half of HubSpotTarget (which supplies the transport and the config)."""

    name: str
    transport: Transport
    config: Any

    def erase(self, records: Sequence[ErasureRecord]) -> list[ErasureResult]:
        """GDPR-delete each contact in turn. Throttled or down: this record and the rest wait
        for the next run (those deleted already stay deleted; asked again, they are 404)."""
        url = f"{self.config.base_url.rstrip('/')}{self.config.objects_path}/gdpr-delete"
        results: list[ErasureResult] = []
        for index, record in enumerate(records):
            if not record.external_id.isdigit():  # HubSpot's record ids are numbers
                results.append(_result(record, Outcome.PERMANENT, "not a HubSpot contact id"))
                continue
            try:
                results.append(self._gdpr_delete(url, record))
            except RetryableError as exc:
                results += [_result(r, Outcome.RETRYABLE, str(exc)) for r in records[index:]]
                break
        return results

    def _gdpr_delete(self, url: str, record: ErasureRecord) -> ErasureResult:
        response = self.transport.request("POST", url, json={"objectId": record.external_id})
        status = response.status_code
        if status < 300 or status == 404:
            return ErasureResult(external_id=record.external_id, ok=True)
        body = response_body(response)
        why = body.get("message") if isinstance(body, dict) else None
        if status == 403:
            raise FatalError(
                f"{self.name}: HubSpot refused the GDPR delete (403 {why or ''}): the private "
                "app needs the crm.objects.contacts.write scope"
            )
        return _result(record, Outcome.PERMANENT, f"HTTP {status}: {why or 'refused'}")


def _result(record: ErasureRecord, outcome: Outcome, why: str) -> ErasureResult:
    return ErasureResult(external_id=record.external_id, ok=False, error_class=outcome, error=why)
