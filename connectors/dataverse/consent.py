"""Dataverse opt-outs read back: leads whose `donot*` columns say "Do Not Allow", changed
since the watermark.

`GET [org]/api/data/v9.2/leads?$select=leadid,<key>,donotemail,…,modifiedon&$filter=
modifiedon ge <stamp> and <key> ne null and (donotemail eq true or …)&$orderby=modifiedon asc`
(query-data-web-api: `$filter` with `ge`, `ne null`, `eq true`; the columns: the lead table
reference, vendor-facts §1.6 — booleans where true means "Do Not Allow"), paged by
`@odata.nextLink`. The overlap is re-read behind the watermark; the flags are checked again
on each row, so a row that came back without them is never an opt-out.

Not read yet: the contact's own flags (model: contacts_and_leads) and Customer Insights –
Journeys' per-address consent rows (`msdynmkt_contactpointconsent4`, vendor-facts §1.7).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from leadbridge.connectors.consent import opt_out
from leadbridge.core.connector import ConsentReader

# The lead's consent columns, as leadbridge's channels.
FLAGS = {
    "donotemail": "email",
    "donotbulkemail": "bulk_email",
    "donotphone": "phone",
    "donotfax": "fax",
    "donotpostalmail": "mail",
}


class DataverseConsent(ConsentReader):
    """The opt-out read of DataverseTarget (which supplies `base`, `_pages`, the config)."""

    name: str
    config: Any
    base: str
    _pages: Callable[..., tuple[list[dict[str, Any]], str | None]]

    def opt_outs(self, since: str | None) -> tuple[list[Any], str]:
        config = self.config
        floor = datetime.fromisoformat(since) if since else datetime(2000, 1, 1, tzinfo=UTC)
        start = floor - config.overlap if since else floor
        stamp = start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        flagged = " or ".join(f"{flag} eq true" for flag in FLAGS)
        where = f"modifiedon ge {stamp} and {config.key_column} ne null and ({flagged})"
        columns = ",".join(["leadid", config.key_column, *FLAGS, "modifiedon"])
        url = (
            f"{self.base}/{config.entity_set}?$select={columns}&$filter={quote(where)}"
            f"&$orderby={quote('modifiedon asc')}"
        )
        records, _ = self._pages(url, track=False)
        newest, found = floor, []
        for record in records:
            at = datetime.fromisoformat(str(record.get("modifiedon")).replace("Z", "+00:00"))
            newest = max(newest, at)
            channels = [channel for flag, channel in FLAGS.items() if record.get(flag) is True]
            key = record.get(config.key_column)
            if channels and key:
                found.append(
                    opt_out(self.name, str(record.get("leadid")), channels, at, lead_key=str(key))
                )
        return found, newest.isoformat()
