"""Parsing landed raw leads on the second core while the first merges and writes.

Parsing a raw lead — reading the payload's shape, normalising email, phone, country and
text — needs nothing from the store and is a third of an ingest's time (docs/benchmarks.md).
A long ingest lands batch N, hands its rows to a worker process here, and meanwhile
merges and writes batch N-1, whose parse came back while batch N was read and landed.

What comes back is only ever a shortcut. A result is used for a row only when the raw lead
it was parsed from equals, field by field, the row as processing reads it under its lock
(a payload redacted or a row taken by another replica in between is parsed again, inline);
a row never handed over, a worker that died, or an error other than `MalformedLead` is
parsed inline exactly as without this module, so the quarantine reasons and the lead
history are the same either way (tests/core/ingest/test_parse_ahead.py).

The worker is a `spawn`ed process (the daemon has threads: a fork could copy a held lock)
started only once an ingest has proved long, and stopped when the ingest ends.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from leadbridge.core.connector import MalformedLead, parse_raw
from leadbridge.core.domain.models import MarketplaceLead, RawLead
from leadbridge.core.ingest.redact import landed

log = logging.getLogger("leadbridge.pipeline")
# Batches an ingest lands before it starts the worker: a poll of a few hundred rows (the
# daemon's usual run) never pays the worker's start (~1 s of imports, on the other core).
START_AFTER_BATCHES = 4
# How long processing waits for a batch's parse before it gives the worker up: a batch
# takes it well under a second; a worker stopped or stuck must not stall the ingest.
WAIT_S = 60.0

# One raw lead's parse as the worker sends it back: ("ok", lead), ("malformed", field,
# reason, fix), or ("error",) — the last parsed again inline, where it raises for real.
Outcome = tuple[Any, ...]


def parse_all(raws: Sequence[RawLead], kinds: dict[str, str]) -> list[Outcome]:
    """The worker's job: parse each raw lead; never raises for one record."""
    out: list[Outcome] = []
    for raw in raws:
        try:
            out.append(("ok", parse_raw(raw, kinds.get(raw.source))))
        except MalformedLead as exc:
            out.append(("malformed", exc.field, exc.reason, exc.fix))
        except Exception:  # parsed again inline, where it is quarantined as unprocessable
            out.append(("error",))
    return out


@dataclass
class _Handed:
    raw: RawLead
    future: Future[list[Outcome]]
    index: int
    handing: int  # which `hand` call: the earlier ones are forgotten once processed


class ParseAhead:
    """The worker and the raw leads handed to it, by (source, source_key) — a landed row's
    identity, known before its id is."""

    def __init__(self, kinds: dict[str, str]) -> None:
        self.kinds = kinds  # source name → the connector kind that landed it
        self._pool: ProcessPoolExecutor | None = None
        self._handed: dict[tuple[str, str], _Handed] = {}
        self._handings = 0
        self._broken = False

    def hand(self, raws: Sequence[RawLead]) -> None:
        """Start parsing these raw leads, just landed, as the store holds them: the batch
        in hand rather than its rows read back. A key twice keeps the first, as landing
        does; a raw lead the store holds otherwise is simply not equal when taken."""
        self._handings += 1
        if self._broken or not raws:
            return
        as_landed = [landed(raw) for raw in raws]  # as processing reads it back
        try:
            future = self._worker().submit(parse_all, as_landed, self.kinds)
        except Exception as exc:  # a broken pool refuses new work: go on inline
            self._give_up(exc)
            return
        for index, raw in enumerate(as_landed):
            handed = _Handed(raw, future, index, self._handings)
            self._handed.setdefault((raw.source, raw.source_key), handed)

    def take(self, raw: RawLead) -> MarketplaceLead | None:
        """The worker's lead for this landed raw lead (as processing read it, under its
        lock), or None (parse it inline). Raises the row's `MalformedLead` when that is
        what the worker found."""
        handed = self._handed.pop((raw.source, raw.source_key), None)
        if handed is None or handed.raw != raw or self._broken:
            return None
        try:
            outcome = handed.future.result(timeout=WAIT_S)[handed.index]
        except Exception as exc:  # died or hung: this and every later row inline
            self._give_up(exc)
            return None
        if outcome[0] == "ok":
            lead: MarketplaceLead = outcome[1]
            return lead
        if outcome[0] == "malformed":
            raise MalformedLead(outcome[1], outcome[2], outcome[3])
        return None

    def forget_all_but_the_last(self) -> None:
        """Forget what was handed before the last `hand`, processed by now (here, or by
        another replica that took it first): a long run must not keep their payloads."""
        last = self._handings
        for key in [key for key, handed in self._handed.items() if handed.handing < last]:
            del self._handed[key]

    def close(self) -> None:
        """Stop the worker; whatever it still had in hand is dropped (parsed inline later)."""
        self._handed.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _worker(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=_in_worker
            )
        return self._pool

    def _give_up(self, exc: BaseException) -> None:
        if not self._broken:
            log.warning(
                "the parsing worker stopped; parsing in this process",
                extra={"error": type(exc).__name__},
            )
        self._broken = True
        self._handed.clear()
        if self._pool is not None:  # a hung worker is not waited for
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.kill()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _in_worker() -> None:
    """The worker's start: Ctrl-C is the parent's to handle (it stops the worker when it
    ends), and a parent gone without a word — SIGKILL, OOM — takes the worker with it,
    instead of leaving it adopted by init, holding the parent's stdout open."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def orphaned() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=orphaned, name="parent-watch", daemon=True).start()
