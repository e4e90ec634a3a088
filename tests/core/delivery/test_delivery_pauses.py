"""A vendor's pause outlives the process that was given it: a later `deliver`, `backfill` or
daemon, with a transport of its own, reads it from the store and sends nothing to that
vendor until it ends; `status` and `/metrics` show it while it runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from leadbridge.core.app import status
from leadbridge.core.app.gauges import StoreCollector
from leadbridge.core.connector import build, sandboxes
from leadbridge.core.delivery import deliver as delivery
from leadbridge.core.delivery import pauses
from leadbridge.core.delivery.deliver import deliver
from leadbridge.core.delivery.pauses import Pause, read_pause, record_pause, running_pauses
from leadbridge.core.domain.models import RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import Settings, load_settings
from leadbridge.core.store import repo, state
from leadbridge.core.store.repo import Store
from tests.clihelp import run_cli

PAUSED_FOR = 120
# What each vendor's throttle says, in the words `status` shows for the pause.
WHY = {"salesforce": "REQUEST_LIMIT_EXCEEDED", "webhook": f"Retry-After {PAUSED_FOR} s"}


@pytest.fixture
def wall_clock(fake_clock: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """UTC time that moves with the fake monotonic clock (a pause is stored in wall time, so
    another process can read it): real time plus whatever the fake clock has been moved."""
    start = fake_clock.now

    def now() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=fake_clock.now - start)

    for module in (delivery, pauses, status, repo):
        monkeypatch.setattr(module, "utcnow", now)
    return now


@pytest.fixture(params=sorted(WHY))
def vendor(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Any, Path]]:
    kind = request.param
    running = sandboxes.start([kind])
    config = tmp_path / "lb.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": f"sqlite:///{tmp_path / 'lb.db'}",
                "log_format": "text",
                "targets": [sandboxes.target_entry(kind, running[kind])],
            }
        ),
        encoding="utf-8",
    )
    yield kind, running[kind], config
    sandboxes.stop(running)


def _add(store: Store, settings: Settings, n: int) -> None:
    payload = {
        "LeadSource": "AppSource (SPZA)-INS|contoso.crm",
        "UserDetails": {"Email": f"p{n}@contoso.com", "LastName": "Doe", "Company": "Contoso"},
    }
    pipeline.land_one(store, RawLead(source="t", source_key=str(n), kind="https", payload=payload))
    pipeline.process_pending(store, settings)


def _new_process_delivers(store: Store, settings: Settings) -> delivery.DeliveryReport:
    """What a later `leadbridge deliver` does: its own target, transport and clock state."""
    target = build(settings.target_configs()[0], placeholder=settings.placeholder)
    return deliver(target, store, settings)


def _status(config: Path) -> dict[str, Any]:
    result = run_cli(["--config", config, "status", "--format", "json"])
    [target] = json.loads(result.stdout)["targets"].values()
    return target


def _gauge(store: Store) -> dict[str, float]:
    families = {f.name: f for f in StoreCollector(store).collect()}
    samples = families["leadbridge_target_paused_until_seconds"].samples
    return {s.labels["target"]: s.value for s in samples}


def test_a_pause_binds_every_later_process_until_it_ends(
    vendor: tuple[str, Any, Path], fake_clock: Any, wall_clock: Any
) -> None:
    kind, sandbox, config = vendor
    settings = load_settings(config)
    store = Store(settings.store)
    name = settings.targets[0].name
    _add(store, settings, 1)
    sandbox.faults.retry_after_s = PAUSED_FOR
    sandbox.faults.throttle_next = 1

    told = _new_process_delivers(store, settings)
    assert told.pushed == 0 and told.retrying == 1
    assert told.pause is not None and WHY[kind] in told.pause.why
    calls = sandbox.api_calls()
    assert calls >= 1

    _add(store, settings, 2)  # due now and never tried: only the stored pause holds it back
    later = _new_process_delivers(store, settings)
    assert later.api_calls == 0 and sandbox.api_calls() == calls
    assert later.pause is not None and WHY[kind] in later.pause.why
    assert abs(later.pause.until - told.pause.until) < timedelta(seconds=1)

    with store.connect() as conn:
        stored = read_pause(conn, name, wall_clock())
    assert stored is not None and stored.why == told.pause.why
    assert _status(config)["paused"] == {"until": stored.until.isoformat(), "why": stored.why}
    table = run_cli(["--config", config, "status"])
    assert WHY[kind].split()[0] in table.output
    assert _gauge(store) == {name: stored.until.timestamp()}
    printed = run_cli(["--config", config, "deliver"])  # what is left is waiting: exit 0
    assert "PAUSED by the vendor until" in printed.output and sandbox.api_calls() == calls

    fake_clock.now += PAUSED_FOR - 5
    backfill = run_cli(["--config", config, "backfill"])
    assert "PAUSED by the vendor until" in backfill.output
    assert _new_process_delivers(store, settings).api_calls == 0  # not one call inside it
    assert sandbox.api_calls() == calls

    fake_clock.now += 6  # the pause is over
    after = _new_process_delivers(store, settings)
    assert after.pause is None and after.pushed == 2 and sandbox.api_calls() > calls
    assert _status(config)["paused"] is None
    assert _gauge(store) == {}


def test_a_longer_pause_extends_the_stored_one_and_a_shorter_one_never_cuts_it(
    store: Store,
) -> None:
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    hour = Pause("sales", now + timedelta(hours=1), "REQUEST_LIMIT_EXCEEDED")
    minute = Pause("sales", now + timedelta(minutes=1), "HTTP 429, Retry-After 60 s")
    day = Pause("sales", now + timedelta(days=1), "HubSpot daily limit reached")
    with store.begin() as conn:
        assert record_pause(conn, hour, now) == hour
        assert record_pause(conn, minute, now) == hour  # shorter: the hour still holds
        assert read_pause(conn, "sales", now) == hour
        assert record_pause(conn, day, now) == day
        assert read_pause(conn, "sales", now) == day
        assert read_pause(conn, "sales", now + timedelta(days=2)) is None  # ended: ignored
        # once ended, a shorter pause is a new one, not a cut
        later = now + timedelta(days=2)
        again = Pause("sales", later + timedelta(minutes=1), "HTTP 503, Retry-After 60 s")
        assert record_pause(conn, again, later) == again


def test_a_broken_stored_pause_is_ignored_not_obeyed(store: Store) -> None:
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    with store.begin() as conn:
        for target, value in [
            ("a", "not json"),
            ("b", "[1, 2]"),
            ("c", '{"until": "tomorrow"}'),
            ("d", '{"until": "2026-03-02T10:00:00"}'),  # no zone: can't be compared
            ("e", '{"until": "2026-03-02T10:00:00+00:00", "why": "Retry-After 3600 s"}'),
        ]:
            state.put(conn, state.target_pause(target), value, now)
        assert [p.target for p in running_pauses(conn, now)] == ["e"]
        assert read_pause(conn, "a", now) is None
