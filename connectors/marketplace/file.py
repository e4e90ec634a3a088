"""`leads_file` source: JSON lines of HTTPS payloads, or a Partner Center CSV export.

Used for backfills (leads a publisher captured elsewhere), imports, and the demo. Every
line or row is landed, readable or not: a bad one is quarantined with its line number and
the reason, and the rest of the file goes on.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from leadbridge.connectors.marketplace import MarketplacePayloads
from leadbridge.connectors.marketplace.https import (
    MAX_RECORD_CHARS,
    payload_key,
    read_record,
    unparsed,
)
from leadbridge.connectors.marketplace.leadsource import build_lead
from leadbridge.connectors.marketplace.table import parse_table_row, parse_time
from leadbridge.core.connector import ConnectorConfig, Countable, MalformedLead
from leadbridge.core.domain.durations import Duration
from leadbridge.core.domain.models import MarketplaceLead, RawLead

# Partner Center's export headers are not documented; these are the spellings seen in
# exports, the Table columns and the HTTPS schema, compared without case, spaces or punctuation.
_CSV_ALIASES = {
    "leadsource": "LeadSource",
    "actioncode": "ActionCode",
    "action": "ActionCode",
    "offertitle": "OfferTitle",
    "offerdisplayname": "OfferTitle",
    "offername": "OfferTitle",
    "offer": "OfferTitle",
    "firstname": "FirstName",
    "customerfirstname": "FirstName",
    "lastname": "LastName",
    "customerlastname": "LastName",
    "email": "Email",
    "emailaddress": "Email",
    "customeremail": "Email",
    "contactemail": "Email",
    "phone": "Phone",
    "phonenumber": "Phone",
    "country": "Country",
    "countryregion": "Country",
    "customercountry": "Country",
    "company": "Company",
    "companyname": "Company",
    "customercompany": "Company",
    "title": "Title",
    "jobtitle": "Title",
    "description": "Description",
    "notes": "Description",
    "createdtime": "CreatedTime",
    "createddate": "CreatedTime",
    "created": "CreatedTime",
    "date": "CreatedTime",
    "timestamp": "CreatedTime",
    "customerinfo": "CustomerInfo",
    "receivedat": "CreatedTime",
}


class LeadsFileConfig(ConnectorConfig):
    kind: str = "leads_file"
    path: Path
    format: Literal["auto", "jsonl", "csv"] = "auto"
    every: Duration = Field(default=timedelta(minutes=5))


class LeadsFileSource(MarketplacePayloads, Countable):
    """Reads a JSONL or CSV file of marketplace leads; resumable by record count."""

    Config: ClassVar[type[LeadsFileConfig]] = LeadsFileConfig
    role: ClassVar[str] = "source"
    payload_kinds: ClassVar[frozenset[str]] = frozenset({"https", "csv"})

    def __init__(self, config: LeadsFileConfig) -> None:
        self.config = config
        self.name = config.name

    @classmethod
    def from_config(cls, config: LeadsFileConfig) -> LeadsFileSource:
        return cls(config)

    @property
    def format(self) -> str:
        if self.config.format != "auto":
            return self.config.format
        return "csv" if self.config.path.suffix.lower() == ".csv" else "jsonl"

    def fetch(self, cursor: str | None) -> Iterator[tuple[RawLead, str]]:
        """Yield records after the cursor's record count; a replaced file starts over.

        The cursor is `<bytes>:<hash>:<records read>`: a hash of the file's first bytes (up
        to 1 KiB) when it was read. If those bytes changed, the file was rotated or
        rewritten and is read from the top (dedupe by source key makes that harmless);
        a file that only grew keeps its prefix and resumes.
        """
        path = self.config.path
        if not path.exists():
            raise FileNotFoundError(f"sources[{self.name}].path: {path} does not exist")
        skip = _records_read(cursor, path)
        fingerprint = _fingerprint(path, min(path.stat().st_size, 1024))
        records = (
            self._csv_records(path, skip)
            if self.format == "csv"
            else self._jsonl_records(path, skip)
        )
        for index, raw in enumerate(records, start=skip + 1):
            yield raw, f"{fingerprint}:{index}"

    def expected_records(self, cursor: str | None) -> int | None:
        """The file's lines (less the CSV header), less those the cursor says were read:
        counted a MiB at a time, so a gigabyte file costs a fraction of a second and no
        memory. An estimate: blank lines and quoted line breaks count as records."""
        path = self.config.path
        if not path.exists():
            return None
        lines, last = 0, b"\n"
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
        lines += last != b"\n"  # a last line without its newline is a record too
        if self.format == "csv":
            lines -= 1
        return max(0, lines - _records_read(cursor, path))

    def _jsonl_records(self, path: Path, skip: int) -> Iterator[RawLead]:
        """The records after the first `skip` (read before, per the cursor): those are
        counted, not parsed, so resuming a million-line file costs a read, not a parse."""
        with path.open(encoding="utf-8-sig", errors="replace") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                if skip:
                    skip -= 1
                    continue
                payload = read_record(line.rstrip("\n"), f"line {line_no}")
                yield RawLead(
                    source=self.name,
                    source_key=payload_key(payload),
                    kind="https",
                    payload=payload,
                    occurred_at=_payload_time(payload),
                )

    def _csv_records(self, path: Path, skip: int) -> Iterator[RawLead]:
        """The records after the first `skip`: only the CSV reader can tell where a record
        ends (a quoted field may span lines), so those are read and dropped."""
        for raw in self._csv_all(path):
            if skip:
                skip -= 1
                continue
            yield raw

    def _csv_all(self, path: Path) -> Iterator[RawLead]:
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
            lines = _Lines(handle)
            reader = csv.reader(lines)
            header = _next_row(reader)
            if isinstance(header, csv.Error):  # without a header no row can be read
                problem = f"line {reader.line_num}: header: {header}"
                yield self._csv_raw(unparsed(lines.take().rstrip("\r\n"), problem))
                return
            lines.take()
            while (values := _next_row(reader)) is not None:
                record = lines.take().rstrip("\r\n")
                if isinstance(values, csv.Error):
                    payload = unparsed(record, f"line {reader.line_num}: {values}")
                elif len(record) > MAX_RECORD_CHARS:
                    payload = unparsed(
                        record, f"line {reader.line_num}: over {MAX_RECORD_CHARS} characters"
                    )
                elif not any(v.strip() for v in values):
                    continue
                elif len(values) != len(header):
                    payload = unparsed(
                        _csv_line(values),
                        f"line {reader.line_num}: {len(values)} columns, "
                        f"the header has {len(header)}",
                    )
                else:
                    payload = dict(zip(header, values, strict=True))
                yield self._csv_raw(payload)

    def _csv_raw(self, payload: dict[str, Any]) -> RawLead:
        return RawLead(
            source=self.name,
            source_key=payload_key(payload),
            kind="csv",
            payload=payload,
            occurred_at=_payload_time(payload),
        )


class _Lines:
    """The file's lines for csv.reader, remembering those of the record being read, so a
    record the reader refuses (a field over csv's size limit) is kept as the text it was."""

    def __init__(self, handle: Iterator[str]) -> None:
        self.handle = handle
        self.current: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self.handle)
        self.current.append(line)
        return line

    def take(self) -> str:
        """The text of the lines read since the last call."""
        text, self.current = "".join(self.current), []
        return text


def _next_row(reader: Any) -> list[str] | csv.Error | None:
    """The next row, the reader's error for an unreadable one, or None at the end."""
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        return exc


def parse_csv_row(row: Any, occurred_at: datetime | None = None) -> MarketplaceLead:
    """Normalise one export row; headers are matched by their alias table."""
    if not isinstance(row, dict):
        raise MalformedLead("row", "expected a CSV row", "export with a header line")
    canonical: dict[str, Any] = {}
    for header, value in row.items():
        name = _CSV_ALIASES.get(_header_key(str(header)))
        if name is not None and name not in canonical:
            canonical[name] = value
    if "CustomerInfo" in canonical:
        return parse_table_row(
            canonical | {"OfferDisplayName": canonical.get("OfferTitle")}, occurred_at
        )
    customer = {
        k: canonical.get(k)
        for k in ("FirstName", "LastName", "Email", "Phone", "Country", "Company", "Title")
    }
    return build_lead(
        customer=customer,
        lead_source=canonical.get("LeadSource"),
        action_code=canonical.get("ActionCode"),
        offer_title=canonical.get("OfferTitle"),
        description=canonical.get("Description"),
        occurred_at=occurred_at or parse_time(canonical.get("CreatedTime")),
        raw=row,
    )


@lru_cache(maxsize=1024)
def _header_key(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


def _payload_time(payload: dict[str, Any]) -> datetime | None:
    for key, value in payload.items():
        if _CSV_ALIASES.get(_header_key(str(key))) == "CreatedTime":
            return parse_time(value)
    return None


def _csv_line(values: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue().rstrip("\r\n")


def _fingerprint(path: Path, size: int) -> str:
    with path.open("rb") as handle:
        return f"{size}:{hashlib.sha256(handle.read(size)).hexdigest()[:16]}"


def _records_read(cursor: str | None, path: Path) -> int:
    """Records already read per the cursor, or 0 when the file is not the one it describes."""
    size, _, rest = (cursor or "").partition(":")
    mark, _, count = rest.partition(":")
    if not (size.isdigit() and count.isdigit()):
        return 0
    if _fingerprint(path, int(size)) != f"{size}:{mark}":
        return 0
    return int(count)
