"""Reading a source ahead on a thread (core/ingest/read_ahead.py): the same records in the
same order, the source's error where it came, a bounded read, and nothing left running."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadbridge.core.ingest import pipeline, read_ahead
from leadbridge.core.ingest.read_ahead import AHEAD, CHUNK, ReadAhead


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("read-ahead")]


def _read_to_error(reader: ReadAhead[int], error: type[Exception], match: str) -> list[int]:
    """What `reader` hands out before it raises `error` (which it must)."""
    got: list[int] = []
    with pytest.raises(error, match=match):
        for item in reader:
            got.append(item)
    return got


def _endless(pulled: list[int]) -> Iterator[int]:
    """A source that never ends, counting in `pulled[0]` the records taken from it."""
    while True:
        pulled[0] += 1
        yield pulled[0]


def _settled(count: list[int]) -> int:
    """The count once the reader has stopped pulling (blocked on its full queue); or, from
    a reader that never stops, wherever it has got to after ten seconds."""
    last, deadline = -1, time.monotonic() + 10
    while count[0] != last and time.monotonic() < deadline:
        last = count[0]
        time.sleep(0.3)
    return count[0]


def test_every_record_in_order() -> None:
    reader = ReadAhead(iter(range(2 * AHEAD + 37)), "numbers")
    assert list(reader) == list(range(2 * AHEAD + 37))
    reader.close()
    assert not _threads()


def test_the_sources_error_comes_after_what_it_read_before() -> None:
    def failing() -> Iterator[int]:
        yield from range(CHUNK + 50)
        raise ConnectionError("the page after did not come")

    reader = ReadAhead(failing(), "failing")
    assert _read_to_error(reader, ConnectionError, "did not come") == list(range(CHUNK + 50))
    reader.close()


def test_the_read_is_bounded_whatever_the_sources_size() -> None:
    """A source far longer than what is read ahead is pulled no further than that while
    the ingest is busy: memory doesn't grow with the source."""
    pulled = [0]
    reader = ReadAhead(_endless(pulled), "endless")
    assert next(reader) == 1
    assert _settled(pulled) <= AHEAD + 2 * CHUNK + 1  # the chunk taken, the queue, the next
    assert next(reader) == 2  # and it goes on from there
    reader.close()
    assert not _threads()


def test_closing_ends_the_read_and_the_sources_own_cleanup() -> None:
    cleaned = threading.Event()

    def source() -> Iterator[int]:
        try:
            n = 0
            while True:
                n += 1
                yield n
        finally:
            cleaned.set()  # e.g. the table client closed

    reader = ReadAhead(source(), "closing")
    next(reader)
    reader.close()
    assert cleaned.is_set()
    assert not _threads()


def test_a_closed_read_pulls_not_a_record_more() -> None:
    """Closing stops the reader before its next pull: with a table source, before the next
    page's request."""
    pulled = [0]
    reader = ReadAhead(_endless(pulled), "stopping")
    next(reader)
    settled = _settled(pulled)
    reader.close()
    assert pulled[0] <= settled + 1  # the one in hand when it saw the close, at most
    assert not _threads()


def test_a_source_that_fails_to_close_is_an_error_not_a_hang() -> None:
    class Unclosable:
        def __init__(self) -> None:
            self.items = iter(range(5))

        def __iter__(self) -> Iterator[int]:
            return self

        def __next__(self) -> int:
            return next(self.items)

        def close(self) -> None:
            raise OSError("the client would not close")

    reader = ReadAhead(Unclosable(), "unclosable")
    assert _read_to_error(reader, OSError, "would not close") == [0, 1, 2, 3, 4]
    reader.close()


def test_a_slow_sources_first_record_is_not_held_for_a_whole_chunk() -> None:
    release = threading.Event()

    def slow() -> Iterator[str]:
        yield "first"
        release.wait(10)
        yield "second"

    reader = ReadAhead(slow(), "slow")
    got: list[str] = []
    taker = threading.Thread(target=lambda: got.append(next(reader)))
    taker.start()
    taker.join(5)
    assert got == ["first"]  # handed over while the source still waits for its second
    release.set()
    assert list(reader) == ["second"]
    reader.close()


def test_a_long_ingest_reads_ahead_and_a_stopped_one_leaves_no_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadbridge.connectors.marketplace.file import LeadsFileConfig, LeadsFileSource
    from leadbridge.core.app.synthetic import write_jsonl
    from leadbridge.core.settings import load_settings
    from leadbridge.core.store.repo import Store

    monkeypatch.setattr(pipeline, "START_AFTER_BATCHES", 2)
    started: list[str] = []
    real = read_ahead.ReadAhead.__init__

    def counting(self: ReadAhead[object], records: Iterator[object], name: str) -> None:
        started.append(name)
        real(self, records, name)

    monkeypatch.setattr(read_ahead.ReadAhead, "__init__", counting)
    leads_file = tmp_path / "leads.jsonl"
    write_jsonl(leads_file, 400)
    settings = load_settings(None, store=f"sqlite:///{tmp_path / 'lb.db'}", batch_size=20)
    store = Store(settings.store)
    source = LeadsFileSource(LeadsFileConfig(name="drop", path=leads_file))
    stop = threading.Event()
    report = pipeline.ingest(
        source, store, settings, stop=stop, on_batch=lambda r: r.fetched >= 200 and stop.set()
    )
    assert started == ["drop"]
    assert report.fetched == 200  # stopped after the batch in hand
    assert not _threads()
    report = pipeline.ingest(source, store, settings)  # the next run: from the cursor on
    assert report.fetched == 200
    assert not _threads()
    store.dispose()
