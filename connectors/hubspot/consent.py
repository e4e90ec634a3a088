"""HubSpot opt-outs read back: leadbridge's contacts unsubscribed from all email, changed
since the watermark.

`hs_email_optout` is the contact's "unsubscribed from all email" (read-only through the CRM
API, set by HubSpot when the person unsubscribes: vendor-facts §3; writing one goes through
the subscriptions API instead). The CRM search (`POST /crm/v3/objects/contacts/search`,
developers.hubspot.com/docs/api-reference/latest/crm/search-the-crm) asks for contacts with
`hs_email_optout EQ true`, leadbridge's lead key set, and `lastmodifieddate GTE` the
watermark minus the overlap, sorted by it; a search stops at 10,000 results, so near the cap
it starts again from the newest timestamp seen. HubSpot answers booleans as the strings
"true"/"false": the property is checked again on each row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from leadbridge.connectors.consent import opt_out
from leadbridge.core.connector import ConsentReader, RetryableError
from leadbridge.core.connector.transport import Transport, response_body

OPT_OUT_PROPERTY = "hs_email_optout"
SEARCH_PAGE, SEARCH_CAP = 200, 10_000


class HubSpotConsent(ConsentReader):
    """The opt-out read of HubSpotTarget (which supplies the transport and the config)."""

    name: str
    config: Any
    transport: Transport

    def opt_outs(self, since: str | None) -> tuple[list[Any], str]:
        from leadbridge.connectors.hubspot.target import _ms

        overlap_ms = int(self.config.overlap.total_seconds() * 1000)
        floor = max(0, int(since) - overlap_ms) if since else 0
        newest = int(since) if since else 0
        found: dict[str, dict[str, Any]] = {}
        after: str | None = None
        read = 0
        while True:
            page = self._search_opt_outs(floor, after)
            results = [r for r in page.get("results") or [] if isinstance(r, dict)]
            read += len(results)
            for record in results:
                modified = _ms(record.get("properties", {}).get("lastmodifieddate"))
                newest = max(newest, modified)
                seen = self._opt_out_of(record, modified)
                if seen is not None:
                    found[str(record.get("id"))] = seen
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after or not results:
                break
            if read + SEARCH_PAGE > SEARCH_CAP:
                if newest <= floor:
                    break
                floor, after, read = newest, None, 0
        return list(found.values()), str(newest)

    def _opt_out_of(self, record: dict[str, Any], modified: int) -> dict[str, Any] | None:
        properties = record.get("properties") or {}
        key = properties.get(self.config.lead_key_property)
        if str(properties.get(OPT_OUT_PROPERTY)).lower() != "true" or not key:
            return None
        at = datetime.fromtimestamp(modified / 1000, UTC)
        return opt_out(self.name, str(record.get("id")), ["email"], at, lead_key=str(key))

    def _search_opt_outs(self, floor: int, after: str | None) -> dict[str, Any]:
        url = f"{self.config.base_url.rstrip('/')}{self.config.objects_path}/search"
        filters = [
            {"propertyName": OPT_OUT_PROPERTY, "operator": "EQ", "value": "true"},
            {"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(floor)},
            {"propertyName": self.config.lead_key_property, "operator": "HAS_PROPERTY"},
        ]
        body: dict[str, Any] = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
            "properties": [OPT_OUT_PROPERTY, "lastmodifieddate", self.config.lead_key_property],
            "limit": SEARCH_PAGE,
        }
        if after:
            body["after"] = str(after)  # opaque: sent back exactly as HubSpot gave it
        response = self.transport.request("POST", url, json=body)
        answer = response_body(response)
        if response.status_code >= 400 or not isinstance(answer, dict):
            raise RetryableError(f"{self.name}: opt-out search HTTP {response.status_code}")
        return answer
