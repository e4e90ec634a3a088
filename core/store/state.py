"""What leadbridge remembers between runs, through one typed API.

The `cursors` table is a key-value store of small facts: a source's cursor, a stage
watermark, a target's health and its vendor's pause. Every key is made here, by the
function that names what it holds, so the table reads as this list — and a key can't be
misspelt in one of the places that use it. The stored names stay what they always were.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, select

from leadbridge.core.store import repo
from leadbridge.core.store.tables import cursors


@dataclass(frozen=True)
class Key:
    """One remembered fact: what it is, and whose (a source's or a target's name)."""

    kind: str
    owner: str = ""

    @property
    def name(self) -> str:
        return _NAMES[self.kind].format(self.owner)


# What each kind of fact is stored under (the `cursors.name` column).
_NAMES = {
    "source_cursor": "source:{}",  # how far a source's records have landed
    "backfill_cursor": "backfill:{}",  # how far a backfill of a source has landed
    "stage_watermark": "stages:{}",  # how far a target's stages have been read back
    "consent_watermark": "consent:{}",  # how far a target's opt-outs have been read back
    "target_health": "target:{}:health",  # ok / fatal, and the target's own state (JSON)
    "target_pause": "target:{}:pause",  # a vendor's pause: until, why (JSON)
    "target_calls": "target:{}:calls",  # API calls and errors per clock hour, the last two
    "last_test_lead": "health:last_test_lead",  # when Microsoft's test lead last arrived
    "queue_schema": "procrastinate:schema",  # the cluster queue's schema version
    "alert_target": "alerts:target:{}",  # a target seen down since when, and alerted? (JSON)
    "alert_watermark": "alerts:{}",  # how far the alert watcher has read (dead letters, digest)
}


def source_cursor(source: str) -> Key:
    return Key("source_cursor", source)


def backfill_cursor(source: str) -> Key:
    return Key("backfill_cursor", source)


def stage_watermark(target: str) -> Key:
    return Key("stage_watermark", target)


def consent_watermark(target: str) -> Key:
    """Where the target's opt-out read (core/sync/consentsync.py) goes on from."""
    return Key("consent_watermark", target)


def target_health(target: str) -> Key:
    return Key("target_health", target)


def target_calls(target: str) -> Key:
    """A target's API calls and error answers per clock hour (core/delivery/deliver.py)."""
    return Key("target_calls", target)


def target_pause(target: str) -> Key:
    return Key("target_pause", target)


def alert_target(target: str) -> Key:
    return Key("alert_target", target)


def alert_watermark(what: str) -> Key:
    return Key("alert_watermark", what)


LAST_TEST_LEAD = Key("last_test_lead")
QUEUE_SCHEMA = Key("queue_schema")


def get(conn: Connection, key: Key) -> str | None:
    return repo.get_cursor(conn, key.name)


def put(conn: Connection, key: Key, value: str, at: datetime) -> None:
    repo.set_cursor(conn, key.name, value, at)


def forget(conn: Connection, key: Key) -> None:
    repo.delete_cursor(conn, key.name)


def get_json(conn: Connection, key: Key) -> dict[str, Any] | None:
    """A fact stored as a JSON object; None when absent or not an object."""
    value = get(conn, key)
    if value is None:
        return None
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def put_json(conn: Connection, key: Key, value: dict[str, Any], at: datetime) -> None:
    put(conn, key, orjson.dumps(value).decode(), at)


def every(conn: Connection, kind: str) -> dict[str, str]:
    """Every fact of one kind, by owner: every target's health, every running pause."""
    prefix, _, suffix = _NAMES[kind].partition("{}")
    rows = conn.execute(
        select(cursors.c.name, cursors.c.value).where(cursors.c.name.like(f"{prefix}%{suffix}"))
    )
    return {
        name.removeprefix(prefix).removesuffix(suffix): value
        for name, value in rows
        if name.startswith(prefix) and name.endswith(suffix)
    }


def every_updated(conn: Connection, kind: str) -> dict[str, Any]:
    """Like `every`, with each row's `updated_at` too (status shows when a cursor moved)."""
    prefix, _, suffix = _NAMES[kind].partition("{}")
    rows = conn.execute(select(cursors).where(cursors.c.name.like(f"{prefix}%{suffix}")))
    return {
        row.name.removeprefix(prefix).removesuffix(suffix): row
        for row in rows
        if row.name.startswith(prefix) and row.name.endswith(suffix)
    }


# --- a target's API calls per clock hour (`target_calls`) -----------------------------------

_NO_CALLS = {"calls": 0, "errors": 0}


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def add_calls(conn: Connection, target: str, calls: int, errors: int, at: datetime) -> None:
    """Add API calls and error answers to the target's count for `at`'s clock hour; the
    hour before is kept beside it, older ones dropped. One target's deliveries run one at
    a time in a cluster, so read-and-write is enough."""
    key = target_calls(target)
    hours = (get_json(conn, key) or {}).get("hours", {})
    hour = _hour(at).isoformat()
    seen = hours.get(hour, _NO_CALLS)
    hours[hour] = {"calls": seen["calls"] + calls, "errors": seen["errors"] + errors}
    put_json(conn, key, {"hours": dict(sorted(hours.items())[-2:])}, at)


def calls_by_hour(conn: Connection, target: str, now: datetime) -> dict[str, dict[str, int]]:
    """The target's counts for `now`'s clock hour ("this") and the one before ("previous")."""
    hours = (get_json(conn, target_calls(target)) or {}).get("hours", {})
    this = _hour(now)
    return {
        "this": hours.get(this.isoformat(), _NO_CALLS),
        "previous": hours.get((this - timedelta(hours=1)).isoformat(), _NO_CALLS),
    }
