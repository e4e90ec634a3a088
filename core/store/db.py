"""The engine: SQLite (WAL, busy timeout) by default, PostgreSQL (psycopg 3) by URL.

A store that can't be opened is one `StoreUnavailable` with the reason and the fix, never
a driver's traceback: it is the first thing a new installation gets wrong.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

log = logging.getLogger("leadbridge.store")
SQLITE_BUSY_TIMEOUT_MS = 30_000
# The store holds every lead's personal data: its files are the owner's alone. SQLite
# creates the -wal and -shm files with the database file's mode, so setting it on the
# database file before SQLite first opens it covers all three.
STORE_FILE_MODE = 0o600
STORE_DIR_MODE = 0o700
_SQLITE_FILES = {"": "database", "-wal": "WAL", "-shm": "shared-memory"}
# What leadbridge is built and tested on: backend → the drivers it ships ("" = the default).
SUPPORTED_STORES = {"sqlite": ("", "pysqlite"), "postgresql": ("", "psycopg")}
STORE_EXAMPLES = "sqlite:///path/leadbridge.db or postgresql://user:password@host/db"
STORE_FIX = (
    "check `store` in the config (or LEADBRIDGE_STORE): the database must be running, "
    "reachable from here, and accept that user and password"
)


class StoreUnavailable(Exception):
    """The store can't be opened: `reason` says what the driver said (one line, no URL),
    `fix` what the operator can do about it."""

    def __init__(self, reason: str, fix: str = STORE_FIX) -> None:
        super().__init__(f"{reason} — {fix}")
        self.reason = reason
        self.fix = fix

    @classmethod
    def from_error(cls, exc: BaseException) -> StoreUnavailable:
        """The driver's own words, first lines only: SQLAlchemy's wrapper adds the SQL and
        a link, which say nothing to an operator whose database is down."""
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
        reason = "; ".join(lines[:2]) or type(cause).__name__
        if isinstance(cause, ImportError):
            return cls(f"its driver is not installed ({reason})", f"use {STORE_EXAMPLES}")
        return cls(reason[:300])


# What opening a store raises when the store, not leadbridge, is at fault: the driver's
# errors, a missing driver, a folder the SQLite file can't be created in.
OPEN_ERRORS = (SQLAlchemyError, ImportError, OSError)


def unsupported_store(url: URL) -> str | None:
    """Why leadbridge can't use this database, or None. Said before any connection is
    tried, so `config check` catches a `mysql://` store."""
    backend, _, driver = url.drivername.partition("+")
    backend = "postgresql" if backend == "postgres" else backend
    if backend not in SUPPORTED_STORES:
        return f"{backend} is not supported as a store"
    if driver not in SUPPORTED_STORES[backend]:
        return f"the {backend} driver {driver} is not supported"
    return None


def dumps(value: object) -> str:
    """JSON columns (raw payloads, events) through orjson: several times faster than json."""
    return orjson.dumps(value).decode("utf-8")


JSON_OPTIONS = {"json_serializer": dumps, "json_deserializer": orjson.loads}


def make_engine(url: str) -> Engine:
    """Create the engine for a store URL; `postgresql://` is read as psycopg 3."""
    parsed = make_url(url)
    unsupported = unsupported_store(parsed)
    if unsupported:
        raise StoreUnavailable(unsupported, f"use {STORE_EXAMPLES}")
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return create_engine(parsed, pool_pre_ping=True, **JSON_OPTIONS)


def _sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        _private_store_file(Path(url.database).expanduser())
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **JSON_OPTIONS
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # WAL lets readers (status, reports) run while the daemon writes; NORMAL sync is
        # durable across process crashes, which is what landing needs.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Checkpoint the WAL every ~40 MiB instead of 4 MiB: lead keys are random, so each
        # batch dirties pages all over the indexes, and fewer, larger checkpoints write each
        # page once (measured: commit time for 100k raw leads 14 s → 7 s; bench/ingest.py).
        cursor.execute("PRAGMA wal_autocheckpoint=10000")
        cursor.close()

    return engine


def _private_store_file(path: Path) -> None:
    """Create the database file (and any missing folder) readable by its owner only, and
    warn about existing store files that group or others can read.

    Existing files are not chmod-ed behind the operator's back — a group-readable store may
    be a deliberate backup set-up — but the warning says what to run. The log line names
    the kind of file and its mode, not its path.
    """
    _make_private_dirs(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, STORE_FILE_MODE))
    for suffix, kind in _SQLITE_FILES.items():
        try:
            mode = stat.S_IMODE(path.with_name(path.name + suffix).stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            log.warning(
                "store file readable by group or others: it holds personal data",
                extra={"file": kind, "mode": f"{mode:04o}", "fix": "chmod 600 the store files"},
            )


def _make_private_dirs(folder: Path) -> None:
    """mkdir -p, each folder leadbridge creates being 0700 (pathlib's `parents=True` would
    give the parents the default mode)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        with contextlib.suppress(FileExistsError):
            created.mkdir(mode=STORE_DIR_MODE)
