"""Start-up (issue 20, item 6): what `leadbridge --help` and `status` load, and the light
status read being the same as the full one.

Timings are in bench/startup.py and docs/benchmarks.md, never asserted here: the module
lists are what hold the gain, on any machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import typer
from sqlalchemy import insert

from leadbridge.core.app import status
from leadbridge.core.app.cli import app
from leadbridge.core.delivery.pauses import Pause, record_pause
from leadbridge.core.domain.models import RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import Settings
from leadbridge.core.store import repo, runs, state
from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.store.tables import alert_channels, alerts, erasures
from leadbridge.core.sync import erasure

# Runs the CLI as `python -m leadbridge.core` does and, as the process exits, writes the
# names of every module it loaded to the file named by argv[1]. A module core/app/cli.py
# registered lazily and nothing used is in sys.modules unloaded (importlib's _LazyModule;
# `type()` looks without loading it): it is not counted.
LOADED = """
import atexit, json, runpy, sys
def dump():
    loaded = [n for n, m in sys.modules.items() if type(m).__name__ != "_LazyModule"]
    open(out, "w").write(json.dumps(sorted(loaded)))
out, sys.argv = sys.argv[1], ["leadbridge", *sys.argv[2:]]
atexit.register(dump)
runpy.run_module("leadbridge.core", run_name="__main__")
"""


def _loaded(tmp_path: Path, *args: str, expect: int = 0) -> set[str]:
    out = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if k != "LEADBRIDGE_CONFIG"}
    done = subprocess.run(
        [sys.executable, "-c", LOADED, str(out), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == expect, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return set(json.loads(out.read_text(encoding="utf-8")))


def _packages(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.slow
def test_help_loads_neither_the_store_nor_rich_nor_pydantic(tmp_path: Path) -> None:
    """`--help` is typer alone: SQLAlchemy (~175 ms), pydantic and rich's help formatting
    (typer's rich_markup_mode, ~110 ms) are each a large share of the 0.3 s budget."""
    loaded = _loaded(tmp_path, "--help")
    assert "typer" in _packages(loaded)  # it did run
    assert not {"sqlalchemy", "rich", "pydantic", "yaml"} & _packages(loaded)
    assert not {"leadbridge.core.settings", "leadbridge.core.app.render"} & loaded


def test_every_command_has_plain_help() -> None:
    """A group or command added with typer's default (rich) markup would load rich's
    help formatting again for its own `--help` and usage errors."""
    rich: list[str] = []

    def walk(command: typer.core.TyperCommand | typer.core.TyperGroup, path: str) -> None:
        if command.rich_markup_mode is not None:
            rich.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "leadbridge")  # type: ignore[arg-type]
    assert not rich


@pytest.mark.slow
def test_a_subcommands_help_and_a_usage_error_load_no_store_either(tmp_path: Path) -> None:
    assert "sqlalchemy" not in _packages(_loaded(tmp_path, "leads", "list", "--help"))
    assert "sqlalchemy" not in _packages(_loaded(tmp_path, "nonsense", expect=2))


@pytest.mark.slow
def test_status_loads_neither_the_pipeline_nor_the_erasure_job(tmp_path: Path) -> None:
    """Those two bring requests and prometheus_client; `status` only reads the store. Nor
    the address and phone libraries (used on parsing only), nor, on a SQLite store, the
    PostgreSQL dialect (~80 ms together)."""
    config = tmp_path / "lb.yaml"
    config.write_text(
        f"store: sqlite:///{tmp_path / 'lb.db'}\n"
        "sources:\n  - {name: drop, kind: leads_file, path: leads.jsonl}\n",
        encoding="utf-8",
    )
    _loaded(tmp_path, "--config", str(config), "status")  # makes the store (Alembic)
    loaded = _loaded(tmp_path, "--config", str(config), "status")
    heavy = {
        "leadbridge.core.app.views",
        "leadbridge.core.ingest.pipeline",
        "leadbridge.core.sync.erasure",
        "leadbridge.core.support.metrics",
    }
    assert "leadbridge.core.app.status" in loaded
    assert not heavy & loaded
    assert not {"email_validator", "phonenumbers"} & _packages(loaded)
    assert "sqlalchemy.dialects.postgresql" not in loaded


# --- the light status read is the full one ----------------------------------------------------

BODIES = [
    {"LeadSource": "AzureMarketplace-INS|c.o", "UserDetails": {"Email": "ana@contoso.com"}},
    {"LeadSource": "AzureMarketplace-INS|c.o", "UserDetails": {"Email": "not-an-email"}},
    {"UserDetails": {"Email": "x@contoso.com"}},  # no LeadSource: malformed
]


def _filled(store: Store, settings: Settings) -> None:
    """Something in every section `status` shows."""
    for i, body in enumerate(BODIES):
        pipeline.land_one(
            store, RawLead(source="hook", source_key=str(i), kind="https", payload=body)
        )
    pipeline.process_pending(store, settings)
    now = utcnow()
    with store.begin() as conn:
        state.put(conn, state.source_cursor("hook"), "cursor-7", now)
        state.put(conn, state.LAST_TEST_LEAD, now.isoformat(), now)
        state.put_json(conn, state.target_health("crm"), {"state": "refused"}, now)
        record_pause(conn, Pause("crm", now + timedelta(days=1), "HTTP 429"), now)
        repo.enqueue(conn, ["a" * 32, "b" * 32], ["crm", "hook2"], now)
        repo.add_dead_letters(
            conn,
            [
                {
                    "lead_key": "a" * 32,
                    "target": "crm",
                    "error_class": "fatal",
                    "error": "no",
                    "body": {"why": "no"},
                    "created_at": now,
                },
            ],
        )
        conn.execute(
            insert(erasures),
            [
                {
                    "person_hash": "h1",
                    "requested_at": now,
                    "requested_by": "cli",
                    "finished_at": None,
                    "removed": {},
                    "plan": {},
                },
                {
                    "person_hash": "h2",
                    "requested_at": now,
                    "requested_by": "cli",
                    "finished_at": now,
                    "removed": {},
                    "plan": {},
                },
            ],
        )
        runs.beat(conn, "up-1", "single", ["deliver:crm"], now)
        runs.beat(conn, "lost-1", "single", ["ingest:hook"], now - timedelta(hours=1))
        runs.beat(conn, "gone-1", "single", [], now)
        runs.stopped(conn, "gone-1", now)
        run_id = runs.run_started(conn, "deliver:crm", "up-1", "interval", None, now)
        runs.run_finished(conn, run_id, "ok", now)
        runs.run_started(conn, "ingest:hook", "up-1", "interval", None, now)
        conn.execute(
            insert(alerts),
            [
                {
                    "channel": "teams",
                    "event": "hot_lead",
                    "dedupe_key": "k1",
                    "data": {},
                    "created_at": now,
                    "next_attempt_at": now,
                    "attempts": 0,
                    "state": "pending",
                    "grouped": False,
                },
            ],
        )
        conn.execute(
            insert(alert_channels),
            [
                {
                    "name": "teams",
                    "last_failure_at": now,
                    "last_error": "HTTP 500",
                    "failures": 2,
                    "window_sent": 0,
                }
            ],
        )


@pytest.mark.parametrize("channels", [["teams", "slack"], []])
def test_status_reads_every_section_of_the_store(
    store: Store, settings: Settings, channels: list[str]
) -> None:
    """The light module reads what the heavier ones would say: the pending erasures are
    counted as the erasure job counts them (it can't import that job: start-up)."""
    _filled(store, settings)
    args = (["hook", "other"], ["crm", "hook2", "idle"], timedelta(seconds=30), channels)
    with store.connect() as conn:
        full = status.status(conn, *args)
        assert full["erasures_pending"] == erasure.pending_count(conn)
    # every section has something in it, so the comparison compares something
    assert full["sources"]["hook"]["cursor"] == "cursor-7" and full["quarantine"]
    assert full["erasures_pending"] == 1 and full["targets"]["crm"]["paused"]
    assert full["targets"]["crm"]["dead_letters"] == 1 and full["targets"]["hook2"]["outbox"]
    assert {r["state"] for r in full["replicas"]} == {"up", "lost", "stopped"}
    assert len(full["jobs"]) == 2 and full["last_test_lead_at"]
    assert not channels or full["alerts"]["teams"]["pending"] == 1
