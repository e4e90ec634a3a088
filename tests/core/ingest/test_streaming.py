"""Ingest streams (issue 21): the source is pulled one batch ahead of landing at most — and,
once a long ingest reads ahead on a thread (core/ingest/read_ahead.py), no more than what
that reads ahead on top — and a run stopped by Ctrl-C resumes where it stopped, with
nothing lost or landed twice."""

from __future__ import annotations

import csv
import gc
import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from leadbridge.connectors.marketplace import file as file_source
from leadbridge.connectors.marketplace.file import LeadsFileConfig, LeadsFileSource
from leadbridge.core.domain.models import RawLead
from leadbridge.core.ingest import pipeline, read_ahead
from leadbridge.core.settings import Settings, load_settings
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import leads, raw_leads

BATCH = 10


def _payload(i: int) -> dict[str, Any]:
    return {
        "LeadSource": "AzurePortal-Create|contoso.offer",
        "ActionCode": "Create",
        "UserDetails": {"FirstName": f"F{i}", "LastName": "L", "Email": f"u{i}@x.example.com"},
    }


def _count(store: Store, table: Any) -> int:
    with store.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


@pytest.fixture
def batched(tmp_path: Path) -> Settings:
    return load_settings(None, store=f"sqlite:///{tmp_path / 'lb.db'}", batch_size=BATCH)


class _Watched:
    """A generator source that refuses to be read ahead: before handing out a record it
    checks that no more than `limit` records have been pulled past what the store has
    landed. A pipeline that drained the source into a list first would trip it."""

    name = "watched"

    def __init__(self, store: Store, count: int, limit: int = BATCH) -> None:
        self.store = store
        self.count = count
        self.limit = limit
        self.pulled = 0
        self.most_ahead = 0

    def fetch(self, cursor: str | None) -> Iterator[tuple[RawLead, str]]:
        start = int(cursor or 0)
        for i in range(start, self.count):
            ahead = self.pulled - _count(self.store, raw_leads)
            self.most_ahead = max(self.most_ahead, ahead)
            if ahead >= self.limit:
                raise AssertionError(f"{ahead} records pulled ahead of landing")
            self.pulled += 1
            payload = _payload(i)
            yield (
                RawLead(source=self.name, source_key=f"k{i}", kind="https", payload=payload),
                str(i + 1),
            )


def test_ingest_pulls_no_more_than_a_batch_ahead_of_landing(
    batched: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "START_AFTER_BATCHES", 10**9)  # never long enough to read ahead
    store = Store(batched.store)
    source = _Watched(store, 5 * BATCH + 3)
    report = pipeline.ingest(source, store, batched)
    assert (report.fetched, report.processed, report.quarantined) == (53, 53, 0)
    assert source.most_ahead == BATCH - 1  # a whole batch in hand, never more
    assert _count(store, leads) == 53
    store.dispose()


def test_a_long_ingest_reads_ahead_no_further_than_its_bound(
    batched: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "START_AFTER_BATCHES", 2)
    monkeypatch.setattr(read_ahead, "AHEAD", 3 * BATCH)
    monkeypatch.setattr(read_ahead, "CHUNK", 5)
    store = Store(batched.store)
    # The batch in hand, the rest of the chunk it came from, the queue, and the chunk the
    # reader is filling (its record counted as it is pulled).
    bound = BATCH + read_ahead.AHEAD + 2 * read_ahead.CHUNK + 1
    source = _Watched(store, 40 * BATCH + 3, limit=bound)
    report = pipeline.ingest(source, store, batched)
    assert (report.fetched, report.processed) == (403, 403)
    assert BATCH - 1 < source.most_ahead < bound  # read ahead, and no further than that
    assert _count(store, leads) == 403
    store.dispose()


def _write_jsonl(path: Path, count: int) -> Path:
    path.write_text("".join(json.dumps(_payload(i)) + "\n" for i in range(count)), "utf-8")
    return path


def _write_csv(path: Path, count: int) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["Lead Source", "Action Code", "First Name", "Last Name", "Email"])
        for i in range(count):
            p = _payload(i)
            details = p["UserDetails"]
            out.writerow(
                [p["LeadSource"], p["ActionCode"], details["FirstName"], "L", details["Email"]]
            )
    return path


@pytest.mark.parametrize("write", [_write_jsonl, _write_csv], ids=["jsonl", "csv"])
def test_an_interrupted_ingest_resumes_where_it_stopped(
    write: Any, batched: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    total = 9 * BATCH + 5
    suffix = ".csv" if write is _write_csv else ".jsonl"
    path = write(tmp_path / f"leads{suffix}", total)
    store = Store(batched.store)
    real_fetch = LeadsFileSource.fetch
    interrupted: list[int] = []

    def ctrl_c_midway(self: Any, cursor: str | None) -> Any:
        for index, item in enumerate(real_fetch(self, cursor)):
            if not interrupted and index == 3 * BATCH + 7:
                interrupted.append(index)
                raise KeyboardInterrupt  # mid-batch: 7 records pulled, not landed
            yield item

    monkeypatch.setattr(file_source.LeadsFileSource, "fetch", ctrl_c_midway)
    source = LeadsFileSource(LeadsFileConfig(name="file", path=path))
    with pytest.raises(KeyboardInterrupt):
        pipeline.ingest(source, store, batched)
    assert _count(store, raw_leads) == 3 * BATCH  # the committed batches, with their cursor

    report = pipeline.ingest(source, store, batched)
    assert report.fetched == total - 3 * BATCH  # only what the first run had not landed
    assert _count(store, raw_leads) == total
    assert _count(store, leads) == total  # every lead once: none lost, none twice
    again = pipeline.ingest(source, store, batched)
    assert (again.fetched, again.processed) == (0, 0)
    store.dispose()


def test_ctrl_c_while_the_source_is_read_ahead_resumes_where_it_stopped(
    batched: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SIGINT, sent while the reading thread is ahead: Ctrl-C reaches the main
    thread wherever it is (waiting for records, landing, processing), the reading thread
    ends with the ingest, and the next run takes up from the last committed cursor."""
    total = 30 * BATCH + 5
    path = _write_jsonl(tmp_path / "leads.jsonl", total)
    store = Store(batched.store)
    real_fetch = LeadsFileSource.fetch
    inline = pipeline.START_AFTER_BATCHES * BATCH

    def ctrl_c_from_the_reader(self: Any, cursor: str | None) -> Any:
        for index, item in enumerate(real_fetch(self, cursor)):
            if cursor is None and index == inline + 2 * BATCH + 3:
                assert threading.current_thread() is not threading.main_thread()
                signal.raise_signal(signal.SIGINT)
            yield item

    monkeypatch.setattr(file_source.LeadsFileSource, "fetch", ctrl_c_from_the_reader)
    source = LeadsFileSource(LeadsFileConfig(name="file", path=path))
    assert _interrupted(lambda: pipeline.ingest(source, store, batched))
    assert not [t for t in threading.enumerate() if t.name.startswith("read-ahead")]
    # Ctrl-C ends the `leadbridge ingest` process, and the re-run is a new one: the store
    # is opened afresh (the interrupt may have come inside a transaction, whose connection
    # only the ended process lets go of).
    gc.collect()  # what the ended process would have let go of
    store.dispose()
    store = Store(batched.store)
    landed = _count(store, raw_leads)
    assert landed % BATCH == 0 and 0 < landed < total  # whole batches, with their cursor

    report = pipeline.ingest(source, store, batched)
    assert report.fetched == total - landed  # only what the first run had not landed
    assert _count(store, raw_leads) == total
    assert _count(store, leads) == total  # every lead once: none lost, none twice
    store.dispose()


def _interrupted(run: Any) -> bool:
    """Whether `run` ended by Ctrl-C. Not `pytest.raises`: its record of the traceback would
    keep the interrupted frames — and a connection inside a transaction — alive."""
    try:
        run()
    except KeyboardInterrupt:
        return True
    return False
