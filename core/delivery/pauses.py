"""A vendor's pause outlives the process that was told it.

When a CRM says wait (Retry-After, Salesforce's REQUEST_LIMIT_EXCEEDED, a daily limit), the
transport holds its own requests; `remember_pause` writes the pause to the store with the
vendor's reason, and every delivery, backfill, stage read or daemon start — in any process,
on any replica — loads it first (`honour_pause`) and sends nothing to that vendor until it
ends. A longer pause extends a stored one, never shortens it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import orjson
from sqlalchemy import Connection

from leadbridge.core.store import state
from leadbridge.core.store.repo import Store, utcnow

if TYPE_CHECKING:  # status and /metrics read pauses without loading the HTTP machinery
    from leadbridge.core.connector import HttpTarget

log = logging.getLogger("leadbridge.delivery")

_SAME_END = timedelta(seconds=1)  # ends this close are one pause, not an extension


@dataclass(frozen=True)
class Pause:
    """A vendor's order to send nothing to `target` before `until` (UTC), and its reason in
    the vendor's words ("REQUEST_LIMIT_EXCEEDED", "HTTP 429, Retry-After 120 s")."""

    target: str
    until: datetime
    why: str

    def seconds_left(self, now: datetime) -> float:
        return max(0.0, (self.until - now).total_seconds())

    def as_json(self) -> dict[str, str]:
        return {"until": self.until.isoformat(), "why": self.why}


def read_pause(conn: Connection, target: str, now: datetime) -> Pause | None:
    """The target's pause if it still runs; an ended one is as good as none."""
    pause = _parse_pause(target, state.get(conn, state.target_pause(target)))
    return pause if pause is not None and pause.until > now else None


def running_pauses(conn: Connection, now: datetime) -> list[Pause]:
    """Every target's running pause (status, /metrics), by target name."""
    found = (
        _parse_pause(target, value) for target, value in state.every(conn, "target_pause").items()
    )
    return sorted((p for p in found if p is not None and p.until > now), key=lambda p: p.target)


def record_pause(conn: Connection, pause: Pause, now: datetime) -> Pause:
    """Store a pause a vendor gave; returns the one that now holds. A longer pause extends
    the stored one, a shorter one leaves it (two replicas told at once may both write: the
    last write wins, and a pause cut short costs one call the vendor answers with a pause)."""
    current = read_pause(conn, pause.target, now)
    if current is not None and current.until >= pause.until - _SAME_END:
        return current
    state.put_json(conn, state.target_pause(pause.target), pause.as_json(), now)
    return pause


def _parse_pause(target: str, value: str | None) -> Pause | None:
    """A stored pause, or None for a missing or unreadable one (a pause is advice: a broken
    one must not stop delivery for good)."""
    if not value:
        return None
    try:
        data = orjson.loads(value)
        until = datetime.fromisoformat(data["until"])
        why = str(data.get("why") or "")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        log.warning("unreadable pause ignored", extra={"target": target})
        return None
    if until.tzinfo is None:
        return None
    return Pause(target, until, why)


def honour_pause(store: Store, target: HttpTarget) -> Pause | None:
    """Load the target's stored pause into its transport (once: within a process the
    monotonic clock rules) and return the pause holding it now, stored or told here (one
    told here that the store doesn't know yet is written down first). An ended pause is
    simply ignored; the next one overwrites it."""
    now = utcnow()
    with store.connect() as conn:
        stored = read_pause(conn, target.name, now)
    if stored is not None:
        _adopt(target, stored, now)
    if not target.transport.pause.shared:
        return remember_pause(store, target)
    return _held(target, now)


def remember_pause(store: Store, target: HttpTarget) -> Pause | None:
    """Write down a pause the vendor gave this process, so every other process and every
    later command honours it too; returns the pause holding the target, if any."""
    now = utcnow()
    held = _held(target, now)
    if held is None or target.transport.pause.shared:
        return held
    with store.begin() as conn:
        stored = record_pause(conn, held, now)
    target.transport.pause.shared = True
    target.transport.pause.seen = held.until
    _adopt(target, stored, now)  # another process's, longer
    return _held(target, now)


@contextmanager
def vendor_pause(store: Store, target: HttpTarget) -> Iterator[Pause | None]:
    """Around work that calls the target (a stage read, say): yields the running pause, in
    which case the caller sends nothing, and writes down any pause given meanwhile."""
    pause = honour_pause(store, target)
    yield pause
    if pause is None:
        remember_pause(store, target)


def _adopt(target: HttpTarget, stored: Pause, now: datetime) -> None:
    pause = target.transport.pause
    if pause.seen is None or stored.until > pause.seen:
        target.transport.hold(stored.seconds_left(now), stored.why, told=False)
        pause.seen = stored.until


def _held(target: HttpTarget, now: datetime) -> Pause | None:
    seconds = target.transport.paused_for()
    if seconds <= 0:
        return None
    return Pause(target.name, now + timedelta(seconds=seconds), target.transport.pause.why)
