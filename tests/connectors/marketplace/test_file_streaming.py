"""The leads file is read as a stream (issue 21): a backfill of a million rows must not
hold the file in memory, so pulling the first records allocates a small, fixed amount."""

from __future__ import annotations

import csv
import json
import tracemalloc
from itertools import islice
from pathlib import Path

import pytest

from leadbridge.connectors.marketplace.file import LeadsFileConfig, LeadsFileSource

ROWS = 20_000  # ~3 MB of file: reading it whole would allocate at least that
PULLED = 200


def _record(i: int) -> dict[str, object]:
    return {
        "LeadSource": "AzurePortal-Create|contoso.offer",
        "ActionCode": "Create",
        "OfferTitle": "Contoso Offer",
        "UserDetails": {
            "FirstName": f"First{i}",
            "LastName": "Last",
            "Email": f"user{i}@customer.example.com",
            "Company": "Contoso Customer Ltd",
        },
    }


def _jsonl(path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(ROWS):
            handle.write(json.dumps(_record(i)) + "\n")


def _csv(path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["LeadSource", "ActionCode", "OfferTitle", "FirstName", "Email", "Company"])
        for i in range(ROWS):
            r = _record(i)
            d = r["UserDetails"]
            assert isinstance(d, dict)
            out.writerow(
                [
                    r["LeadSource"],
                    r["ActionCode"],
                    r["OfferTitle"],
                    d["FirstName"],
                    d["Email"],
                    d["Company"],
                ]
            )


@pytest.mark.parametrize(("suffix", "write"), [(".jsonl", _jsonl), (".csv", _csv)])
def test_pulling_records_allocates_far_less_than_the_file(
    tmp_path: Path, suffix: str, write: object
) -> None:
    path = tmp_path / f"big{suffix}"
    assert callable(write)
    write(path)
    size = path.stat().st_size
    source = LeadsFileSource(LeadsFileConfig(name="f", path=path))
    records = source.fetch(None)
    tracemalloc.start()
    try:
        first = list(islice(records, PULLED))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        records.close()
    assert len(first) == PULLED
    assert first[-1][0].payload  # records really were read and parsed
    assert peak < size / 8, f"{peak:,} bytes allocated to read {PULLED} of a {size:,}-byte file"


@pytest.mark.parametrize("write", [_jsonl, _csv], ids=["jsonl", "csv"])
def test_resuming_reads_on_from_the_cursor_without_parsing_what_was_read(
    tmp_path: Path, write: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadbridge.connectors.marketplace import file as file_module

    path = tmp_path / ("leads.csv" if write is _csv else "leads.jsonl")
    write(path)  # type: ignore[operator]
    source = LeadsFileSource(LeadsFileConfig(name="f", path=path))
    first = list(islice(source.fetch(None), PULLED))
    cursor = first[-1][1]
    parsed: list[str] = []
    real = file_module.read_record
    monkeypatch.setattr(
        file_module, "read_record", lambda line, where: parsed.append(where) or real(line, where)
    )
    rest = list(islice(source.fetch(cursor), 3))
    emails = [raw.payload.get("UserDetails", raw.payload).get("Email") for raw, _ in rest]
    if write is _csv:
        emails = [raw.payload["Email"] for raw, _ in rest]
    assert emails == [f"user{i}@customer.example.com" for i in range(PULLED, PULLED + 3)]
    assert [position.rsplit(":", 1)[1] for _, position in rest] == ["201", "202", "203"]
    if write is _jsonl:
        assert parsed == ["line 201", "line 202", "line 203"]  # the first 200 only counted
