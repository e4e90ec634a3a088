"""Fixtures shared by every test: a fresh store, settings, the reference samples, Azurite."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leadbridge.core.settings import Settings, load_settings
from leadbridge.core.store.repo import Store

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "reference" / "sample-leads.json"
SAMPLES_COPY = Path(__file__).parent / "data" / "sample-leads.json"
IN_CI = os.environ.get("CI", "").lower() == "true"
AZURITE_DIR = Path(__file__).parent / "azurite"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
    "K1SZFPTOtr/KBHBeksoGMGw=="
)  # Azurite's published well-known dev key


class FakeClock:
    """Monotonic time that only moves when something sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(autouse=True)
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """No test waits for real: every transport sleeps on this clock (dlt's pattern)."""
    from leadbridge.core.connector import transport

    fake = FakeClock()
    monkeypatch.setattr(transport, "default_sleep", fake.sleep)
    monkeypatch.setattr(transport, "default_clock", fake.clock)
    return fake


RAW_EMAIL = re.compile(r"[\w.%+-]{2,}@[\w-]+\.[\w.]+")
KNOWN_SECRETS = (
    "sandbox-secret",
    "sandbox-app-secret",
    "sandbox-private-app-token",
    "sandbox-webhook-secret",
    "s3cr3t-key",
    "topsecret",
    "pa55word",
)


@pytest.fixture(autouse=True)
def logs_carry_no_secrets_or_emails() -> Iterator[None]:
    """Every log line of every test, formatted exactly as production formats it, is checked:
    no raw email address, no configured secret."""
    from leadbridge.core.support.logs import JsonFormatter, RedactingFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    for line in stream.getvalue().splitlines():
        assert not RAW_EMAIL.search(line), f"raw email in a log line: {line}"
        leaked = [s for s in KNOWN_SECRETS if s in line]
        assert not leaked, f"secret in a log line: {line}"


def need(condition: bool, reason: str) -> None:
    """Skip a test whose server is absent, except under CI where it must run."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required under CI=true: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def samples() -> list[dict[str, Any]]:
    """shared/reference/sample-leads.json; the copy in tests/data keeps CI self-contained."""
    path = SAMPLES if SAMPLES.exists() else SAMPLES_COPY
    return json.loads(path.read_text(encoding="utf-8"))["samples"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'lb.db'}")
    yield s
    s.dispose()


@pytest.fixture
def make_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a YAML config into tmp_path and load it like the CLI does."""

    def make(text: str = "", **env: str) -> Settings:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        path = tmp_path / "leadbridge.yaml"
        path.write_text(text, encoding="utf-8")
        return load_settings(path)

    return make


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(None, store=f"sqlite:///{tmp_path / 'lb.db'}")


PG_URL = os.environ.get("LEADBRIDGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the local server, dropped afterwards."""
    import uuid

    import psycopg

    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        need(False, f"PostgreSQL is not reachable at {PG_URL} ({exc})")
        raise
    name = f"lb_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:  # a new connection: a test may have restarted the server
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    """A migrated store in a fresh PostgreSQL database (`pg_url`), disposed afterwards."""
    store = Store(pg_url)
    try:
        yield store
    finally:
        store.dispose()


# A statement's parameters in `few_parameters`: SQLite's limit is lowered to this (from
# 32,766); PostgreSQL's (65,535) can't be, so its lists are made short instead (PG_LIST).
FEW_PARAMETERS = 100


@pytest.fixture(params=["sqlite", "postgresql"])
def few_parameters(
    request: pytest.FixtureRequest, store: Store, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Store]:
    """A store whose statements take fewer parameters than the rows a test has at hand:
    what a day's outage over a backfill brings, without writing 32,767 rows."""
    from sqlalchemy import event

    from leadbridge.core.store import dialect

    if request.param == "postgresql":
        monkeypatch.setattr(dialect, "PG_LIST", 7)
        yield request.getfixturevalue("pg_store")
        return

    def lower(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, FEW_PARAMETERS)

    event.listen(store.engine, "checkout", lower)
    yield store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _azurite_binary() -> Path | None:
    local = AZURITE_DIR / "node_modules" / ".bin" / "azurite-table"
    if local.exists():
        return local
    found = shutil.which("azurite-table")
    if found:
        return Path(found)
    if shutil.which("npm"):  # first run on a fresh machine: install the pinned version
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=AZURITE_DIR,
            capture_output=True,
            timeout=300,
            check=False,
        )
    return local if local.exists() else None


AZURITE_LOG: dict[str, Path] = {}


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's table service on a free loopback port; yields its connection string. Its
    debug log (`azurite_log`) records every request with its time and User-Agent."""
    binary = _azurite_binary()
    need(binary is not None, "Azurite is not installed (npm ci in tests/azurite needs npm)")
    port = free_port()
    AZURITE_LOG["path"] = tmp_path_factory.mktemp("azurite") / "debug.log"
    proc = subprocess.Popen(
        [
            str(binary),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(port),
            "--inMemoryPersistence",
            "--disableTelemetry",  # by default Azurite reports to Microsoft: loopback only
            "--skipApiVersionCheck",
            "--disableProductStyleUrl",
            "--debug",
            str(AZURITE_LOG["path"]),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        need(False, "Azurite did not start within 30 s")
    yield (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
        f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def azurite_log(azurite: str) -> Path:
    """The running Azurite's debug log (every request: time, method, URL, headers)."""
    return AZURITE_LOG["path"]
