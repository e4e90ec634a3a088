"""The engine: the SQLite store's files are private, and the JSON column holds what landing
gives it at the depth landing allows, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from leadbridge.connectors.marketplace.https import UNPARSED, read_record
from leadbridge.core.domain.models import RawLead
from leadbridge.core.domain.normalize import MAX_JSON_DEPTH
from leadbridge.core.store import db, repo
from leadbridge.core.store.repo import Store


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_store_its_wal_and_shm_and_its_folders_are_the_owners_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new" / "deeper" / "lb.db"
    store = Store(f"sqlite:///{path}")
    try:
        with store.begin() as conn:  # a write: SQLite now has its -wal and -shm
            repo.set_cursor(conn, "source:x", "1", repo.utcnow())
            files = [path, path.with_name("lb.db-wal"), path.with_name("lb.db-shm")]
            assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        store.dispose()
    assert _mode(tmp_path / "new") == _mode(tmp_path / "new" / "deeper") == 0o700


def test_an_existing_store_readable_by_others_is_warned_about_not_changed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "lb.db"
    Store(f"sqlite:///{path}").dispose()
    path.chmod(0o644)
    caplog.set_level(logging.WARNING, logger="leadbridge.store")
    Store(f"sqlite:///{path}").dispose()
    warnings = [r for r in caplog.records if r.name == "leadbridge.store"]
    assert [(r.file, r.mode) for r in warnings] == [("database", "0644")]
    assert str(tmp_path) not in warnings[0].getMessage()  # no path in the log line
    assert _mode(path) == 0o644  # an operator's choice is theirs to change


def test_a_private_store_starts_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="leadbridge.store")
    Store(f"sqlite:///{tmp_path / 'lb.db'}").dispose()
    Store(f"sqlite:///{tmp_path / 'lb.db'}").dispose()
    assert not [r for r in caplog.records if r.name == "leadbridge.store"]


def _nested(depth: int) -> dict:
    value: object = "leaf"
    for _ in range(depth - 1):
        value = [value]
    return {"x": value}


def test_the_json_serializer_refuses_past_255_levels_so_landing_bounds_depth() -> None:
    """Why `read_record` lands deep records as text: orjson, the store's serializer, can't
    write them, and the stdlib json would overflow the stack instead."""
    db.dumps(_nested(MAX_JSON_DEPTH))
    with pytest.raises(TypeError, match="Recursion limit"):
        db.dumps(_nested(300))


def _round_trip(store: Store) -> None:
    deep_line = '{"LeadSource":"x","X":' + "[" * 900 + "]" * 900 + "}"
    payloads = {
        "bound": _nested(MAX_JSON_DEPTH),
        "deep": read_record(deep_line, "line 1"),
        "nul": {"FirstName": "A\x00da"},  # PostgreSQL's json keeps \u0000 escaped
    }
    raws = [RawLead(source="s", source_key=k, kind="https", payload=p) for k, p in payloads.items()]
    with store.begin() as conn:
        repo.land(conn, raws, repo.utcnow())
    with store.connect() as conn:
        landed = {row.source_key: row.payload for row in repo.pending_raw_leads(conn, 10)}
    assert landed == payloads
    assert landed["deep"][UNPARSED] == deep_line


def test_landed_payloads_round_trip_on_sqlite(store: Store) -> None:
    _round_trip(store)


def test_landed_payloads_round_trip_on_postgresql(pg_store: Store) -> None:
    _round_trip(pg_store)
