"""Azure Table storage source: the `MarketplaceLeads` table Partner Center writes to.

Polls with a `Timestamp` watermark and an overlap window (reference §4.4), pages through
every continuation, and never writes to the publisher's table. Rows are dedupe-keyed by
`PartitionKey|RowKey`, so the overlap re-reads harmlessly.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from pydantic import Field, SecretStr

from leadbridge.connectors.marketplace import MarketplacePayloads
from leadbridge.connectors.marketplace.https import unparsed
from leadbridge.connectors.marketplace.leadsource import build_lead
from leadbridge.core.connector import ConnectorConfig, MalformedLead
from leadbridge.core.domain import normalize
from leadbridge.core.domain.durations import Duration
from leadbridge.core.domain.models import MarketplaceLead, RawLead
from leadbridge.core.support.whoami import user_agent

if TYPE_CHECKING:
    from azure.data.tables import TableClient

SOURCE_KEY_CHARS = 200  # the store's raw_leads.source_key column


class MarketplaceTableConfig(ConnectorConfig):
    kind: str = "marketplace_table"
    connection_string: SecretStr
    table: str = "MarketplaceLeads"
    every: Duration = Field(default=timedelta(seconds=60))
    overlap: Duration = Field(default=timedelta(minutes=10))
    page_size: int = Field(default=1000, ge=1, le=1000)


class MarketplaceTableSource(MarketplacePayloads):
    """Reads marketplace leads from Azure Table storage (or Azurite)."""

    Config: ClassVar[type[MarketplaceTableConfig]] = MarketplaceTableConfig
    role: ClassVar[str] = "source"
    payload_kinds: ClassVar[frozenset[str]] = frozenset({"table"})

    def __init__(self, config: MarketplaceTableConfig, client: TableClient | None = None) -> None:
        self.config = config
        self.name = config.name
        self._client = client

    @classmethod
    def from_config(cls, config: MarketplaceTableConfig) -> MarketplaceTableSource:
        return cls(config)

    @property
    def client(self) -> TableClient:
        if self._client is None:
            # The Azure SDK loads only when a table is read: the file source shares this
            # module's parser, and every command that reads a leads file would pay for it.
            from azure.data.tables import TableClient

            self._client = TableClient.from_connection_string(
                self.config.connection_string.get_secret_value(),
                table_name=self.config.table,
                user_agent=user_agent(),  # the storage account's logs name the replica
            )
        return self._client

    def fetch(self, cursor: str | None) -> Iterator[tuple[RawLead, str]]:
        """Yield every row changed since the cursor, minus the overlap.

        Rows come back in PartitionKey/RowKey order, not Timestamp order, so the watermark
        can only move once the whole scan is read: the last row is yielded with the newest
        Timestamp seen. Every other row carries a *scan* cursor: the watermark the scan
        started from, the newest Timestamp of the pages before its own, and the
        continuation token of its page — so a scan of a million rows stopped midway (Ctrl-C,
        a crash) goes on from that page, not from the first (landing dedupes the page's
        rows already landed).
        """
        scan = _Scan.parse(cursor)
        pages = self._entities(scan.since).by_page(continuation_token=scan.page)
        newest = scan.newest
        pending: tuple[RawLead, str] | None = None
        while True:
            token = pages.continuation_token  # the one that fetches the page below
            page = next(pages, None)
            if page is None:
                break
            resume = _Scan(scan.since, newest, token).format()
            for entity in page:
                if pending is not None:
                    yield pending
                stamp = entity.metadata.get("timestamp")
                if stamp is not None and (newest is None or stamp > newest):
                    newest = stamp
                pending = (self._raw_lead(entity), resume)
        if pending is not None:
            yield pending[0], _format_cursor(newest)
        elif scan.page is not None:
            # The pages left of a stopped scan are empty now (rows deleted meanwhile): scan
            # again from its watermark, so the cursor can't stay mid-scan for ever.
            yield from self.fetch(_format_cursor(scan.since))

    def _entities(self, since: datetime | None) -> Any:
        if since is None:
            return self.client.list_entities(results_per_page=self.config.page_size)
        return self.client.query_entities(
            "Timestamp ge @since",
            parameters={"since": since - self.config.overlap},
            results_per_page=self.config.page_size,
        )

    def _raw_lead(self, entity: Any) -> RawLead:
        payload = {key: _json_safe(value) for key, value in entity.items()}
        stamp = entity.metadata.get("timestamp")
        if stamp is not None:
            payload["Timestamp"] = stamp.isoformat()
        return RawLead(
            source=self.name,
            source_key=source_key(entity.get("PartitionKey"), entity.get("RowKey")),
            kind="table",
            payload=storable(payload),
            occurred_at=_row_time(payload),
        )


def source_key(partition_key: Any, row_key: Any) -> str:
    """`PartitionKey|RowKey`, or its SHA-256 when the store's column can't hold it (Azure
    keys may be 1 KiB each, and UTF-16): one row that can't be landed would hold the batch."""
    key = f"{partition_key}|{row_key}"
    if len(key) <= SOURCE_KEY_CHARS and _utf8(key):
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable(payload: dict[str, Any]) -> dict[str, Any]:
    """The entity as landed: itself when the store's JSON serializer can write it, else its
    text with every character escaped (nothing lost) under UNPARSED, quarantined with the
    reason. Table strings are UTF-16 and may hold a lone surrogate, which orjson refuses."""
    try:
        orjson.dumps(payload)
    except TypeError as exc:
        return unparsed(json.dumps(payload, ensure_ascii=True, default=str), f"row: {exc}")
    return payload


def parse_table_row(row: Any, occurred_at: datetime | None = None) -> MarketplaceLead:
    """Normalise one MarketplaceLeads entity: a property bag with a CustomerInfo JSON string."""
    if not isinstance(row, dict):
        raise MalformedLead("row", "expected a table entity", "read the row as an object")
    top = {str(k).lower(): v for k, v in row.items()}
    info = top.get("customerinfo")
    if info is None or (isinstance(info, str) and not info.strip()):
        customer: dict[str, Any] = {}
    elif isinstance(info, dict):
        customer = info
    else:
        try:
            customer = normalize.bounded_json(
                normalize.readable(info, normalize.MAX_NOTES_CHARS) or "{}"
            )
        except ValueError as exc:
            raise MalformedLead(
                "CustomerInfo",
                f"not readable as JSON ({exc})",
                "CustomerInfo must be a JSON object string with FirstName, LastName, Email, ...",
            ) from exc
        if not isinstance(customer, dict):
            raise MalformedLead(
                "CustomerInfo",
                f"expected a JSON object, got {type(customer).__name__}",
                "CustomerInfo must be a JSON object string",
            )
    return build_lead(
        customer=customer,
        lead_source=top.get("leadsource"),
        action_code=top.get("actioncode"),
        offer_title=top.get("offerdisplayname") or top.get("offertitle"),
        description=top.get("description"),
        occurred_at=occurred_at or _row_time(row),
        raw=row,
    )


def _row_time(row: dict[str, Any]) -> datetime | None:
    top = {str(k).lower(): v for k, v in row.items()}
    for key in ("createdtime", "timestamp"):
        parsed = parse_time(top.get(key))
        if parsed is not None:
            return parsed
    return None


def parse_time(value: Any) -> datetime | None:
    """ISO-8601 to an aware UTC datetime; Azure's 7-digit fractions are cut to 6."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    head, dot, frac = text.partition(".")
    if dot:
        digits = "".join(c for c in frac if c.isdigit())
        tail = frac[len(digits) :]
        text = f"{head}.{digits[:6]}{tail}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if hasattr(value, "value") and not isinstance(value, str | int | float | bool):
        return _json_safe(value.value)  # EntityProperty (Int64, GUID, ...)
    return value


_SCAN = "scan:"


@dataclass(frozen=True)
class _Scan:
    """Where a table scan stands: the watermark it started from (`since`), the newest row
    Timestamp of the pages already read, and the continuation token of the next page (a
    `{"PartitionKey", "RowKey"}` mapping, as the Table service's x-ms-continuation headers
    give it; None: the first page). A finished scan's cursor is the plain watermark."""

    since: datetime | None
    newest: datetime | None
    page: Any

    @classmethod
    def parse(cls, cursor: str | None) -> _Scan:
        if cursor and cursor.startswith(_SCAN):
            state = json.loads(cursor[len(_SCAN) :])
            return cls(_parse_cursor(state["since"]), _parse_cursor(state["newest"]), state["page"])
        since = _parse_cursor(cursor)
        return cls(since, since, None)

    def format(self) -> str:
        state = {"since": _format_cursor(self.since), "newest": _format_cursor(self.newest)}
        return _SCAN + json.dumps({**state, "page": self.page}, sort_keys=True)


def _parse_cursor(cursor: str | None) -> datetime | None:
    return parse_time(cursor) if cursor else None


def _format_cursor(stamp: datetime | None) -> str:
    return stamp.astimezone(UTC).isoformat() if stamp is not None else ""
