"""Salesforce opt-outs read back: Leads whose HasOptedOutOfEmail, DoNotCall or
HasOptedOutOfFax is true, changed since the watermark.

One SOQL query on SystemModstamp (the system keeps it; it can't be back-set), as the stage
read does, minus the overlap: `SELECT Id, <key>, HasOptedOutOfEmail, DoNotCall,
HasOptedOutOfFax, SystemModstamp FROM Lead WHERE SystemModstamp >= … AND <key> != null AND
(HasOptedOutOfEmail = true OR DoNotCall = true OR HasOptedOutOfFax = true)` (field names:
Lead in the Object Reference, sforce_api_objects_lead.htm). Only leadbridge's own Leads (the
key is set) are read; the flags are checked again on each row, so a row that came back
without them is never read as an opt-out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from simple_salesforce import format_soql

from leadbridge.connectors.consent import opt_out
from leadbridge.core.connector import ConsentReader

# Lead's opt-out checkboxes, as leadbridge's channels.
FLAGS = {"HasOptedOutOfEmail": "email", "DoNotCall": "phone", "HasOptedOutOfFax": "fax"}


class SalesforceConsent(ConsentReader):
    """The opt-out read of SalesforceTarget (which supplies `_query` and the config)."""

    name: str
    config: Any
    _query: Callable[[str], Iterator[dict[str, Any]]]

    def opt_outs(self, since: str | None) -> tuple[list[Any], str]:
        from leadbridge.connectors.salesforce.target import _parse_time

        config = self.config
        start = _parse_time(since) - config.overlap if since else datetime(2000, 1, 1, tzinfo=UTC)
        soql = format_soql(
            "SELECT Id, {:literal}, HasOptedOutOfEmail, DoNotCall, HasOptedOutOfFax, "
            "SystemModstamp FROM Lead WHERE SystemModstamp >= {} AND {:literal} != null AND "
            "(HasOptedOutOfEmail = true OR DoNotCall = true OR HasOptedOutOfFax = true) "
            "ORDER BY SystemModstamp",
            config.external_id_field,
            start,
            config.external_id_field,
        )
        newest = _parse_time(since) if since else start
        found = []
        for record in self._query(soql):
            at = _parse_time(record["SystemModstamp"])
            newest = max(newest, at)
            channels = [channel for flag, channel in FLAGS.items() if record.get(flag) is True]
            key = record.get(config.external_id_field)
            if channels and key:
                found.append(
                    opt_out(self.name, str(record.get("Id")), channels, at, lead_key=str(key))
                )
        return found, newest.isoformat()
