"""Reading a source on a thread of its own while the batches before are landed and processed.

A table or API source spends much of its fetch waiting: for the next page of a million-row
Azure Table, for the next page of referrals. Read in the ingest's own thread, that wait
adds to every batch's merging and writing; read here, it overlaps them. Only the wait
overlaps (parsing a page holds the GIL like everything else): a source that waits on
nothing, a local file, neither gains nor loses much (docs/benchmarks.md, "Fourth pass").
A short ingest (a poll of a few hundred rows) is read inline and starts no thread: the
ingest hands its source over only once it has proved long (core/ingest/pipeline.py).

Nothing about the source's contract changes: records come out in the order the source
yields them, each with the cursor after it, so landing commits the same cursors as before;
an error the source raises comes out after the records it yielded before it, where it would
have been raised inline. Memory stays bounded: at most `AHEAD` records wait in the queue.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# Records read ahead at most: two pages of an Azure Table (1,000 rows each), so the next
# page is fetched while the one before is landed, and memory doesn't grow with the source.
AHEAD = 2_000
# Records handed over together: a queue operation per record would cost more than the
# overlap gains on a source that answers fast.
CHUNK = 100
# How often a reader blocked on a full queue looks whether the ingest has ended.
_POLL_S = 0.1
_JOIN_S = 5.0


class ReadAhead(Generic[T]):
    """`records` read on a thread, handed out in order. `close()` ends the read."""

    def __init__(self, records: Iterator[T], name: str) -> None:
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max(1, AHEAD // CHUNK))
        self._closed = threading.Event()
        self._chunk: list[T] = []
        self._at = 0
        self._done = False
        self._thread = threading.Thread(
            target=self._read, args=(records,), name=f"read-ahead {name}", daemon=True
        )
        self._thread.start()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        while self._at >= len(self._chunk):
            if self._done:
                raise StopIteration
            kind, value = self._next_entry()
            if kind == "error":
                self._done = True
                raise value
            if kind == "end":
                self._done = True
                raise StopIteration
            self._chunk, self._at = value, 0
        item = self._chunk[self._at]
        self._at += 1
        return item

    def close(self) -> None:
        """End the read (the ingest ended, stopped or failed): the thread stops before its
        next record, and closes the source's iterator itself. A read stuck in the source's
        own call (a page that doesn't come) is not waited for longer than `_JOIN_S`: the
        thread is a daemon, and ends with the call. A second close does nothing."""
        if self._closed.is_set():
            return
        self._closed.set()
        while True:  # free a reader blocked on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=_JOIN_S)

    def _next_entry(self) -> tuple[str, Any]:
        """The next entry from the reader; an error if the reader ended without one (it
        always sends an end or an error: this guards the ingest from waiting forever)."""
        while True:
            try:
                return self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    return ("error", RuntimeError("the source's reading thread ended unseen"))

    def _read(self, records: Iterator[T]) -> None:
        chunk: list[T] = []
        ending: tuple[str, Any] = ("end", None)
        try:
            while True:
                if self._closed.is_set():
                    return  # the ingest is over: not a record (not a page) more
                try:
                    record = next(records)
                except StopIteration:
                    break
                chunk.append(record)
                # Handed over by the hundred, or at once when the ingest is waiting: a slow
                # source's first records are not held back for the rest of a chunk.
                if len(chunk) >= CHUNK or self._queue.empty():
                    if not self._put(("chunk", chunk)):
                        return
                    chunk = []
        except BaseException as exc:  # the source's own error: raised after what it read
            ending = ("error", exc)
        finally:
            ending = _closed_source(records, ending)
        if chunk and not self._put(("chunk", chunk)):
            return
        self._put(ending)

    def _put(self, entry: tuple[str, Any]) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False


def _closed_source(records: Iterator[Any], ending: tuple[str, Any]) -> tuple[str, Any]:
    """Close the source's iterator (a generator's cleanup: its client, its file) on the
    thread that ran it; a failure to close is the read's error unless it had one."""
    close = getattr(records, "close", None)
    if close is None:
        return ending
    try:
        close()
    except Exception as exc:
        return ending if ending[0] == "error" else ("error", exc)
    return ending
