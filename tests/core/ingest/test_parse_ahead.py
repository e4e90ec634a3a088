"""Parsing on the second core (core/ingest/parse_ahead.py) changes nothing but the time: a
long ingest with the worker leaves the store exactly as one without it — leads, events,
raw statuses, quarantine reasons — even when the worker dies midway, when the ingest is
stopped, and when a row changed between handing and processing."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from leadbridge.connectors.marketplace.file import LeadsFileConfig, LeadsFileSource
from leadbridge.core.app.synthetic import raw_payloads
from leadbridge.core.connector import MalformedLead
from leadbridge.core.domain.models import RawLead
from leadbridge.core.ingest import parse_ahead, pipeline
from leadbridge.core.ingest.pipeline import ingest, process_pending
from leadbridge.core.settings import Settings, load_settings
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import events, leads, quarantine, raw_leads

BATCH = 20


def _leads_file(path: Path) -> Path:
    """Synthetic leads (returning customers among them) with, every 25 lines, one of each
    kind of record that is set aside: not JSON, an unreadable LeadSource, a test lead and
    one without an email."""
    odd = [
        "{not json",
        json.dumps({"LeadSource": {"nested": 1}, "UserDetails": {"Email": "o@contoso.com"}}),
        json.dumps(
            {
                "LeadSource": "AzureMarketplace-INS|contoso.app",
                "UserDetails": {"Email": "MSFT_TEST_x@microsoft.com", "LastName": "T"},
            }
        ),
        json.dumps({"LeadSource": "AzureMarketplace-INS|contoso.app", "UserDetails": {}}),
    ]
    lines = []
    for i, payload in enumerate(raw_payloads(300, seed=5)):
        lines.append(json.dumps(payload))
        if i % 25 == 24:
            lines.append(odd[(i // 25) % len(odd)])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _settings(tmp_path: Path, name: str, leads_file: Path) -> Settings:
    source = {"name": "drop", "kind": "leads_file", "path": str(leads_file)}
    return load_settings(
        None, store=f"sqlite:///{tmp_path / name}", batch_size=BATCH, sources=[source]
    )


def _source(leads_file: Path) -> LeadsFileSource:
    return LeadsFileSource(LeadsFileConfig(name="drop", path=leads_file))


def _contents(store: Store) -> dict[str, Any]:
    """What processing decided, without the times each run stamps."""
    with store.connect() as conn:
        return {
            "raw": sorted(
                conn.execute(
                    select(raw_leads.c.source_key, raw_leads.c.status, raw_leads.c.lead_key)
                )
            ),
            "leads": sorted(
                conn.execute(
                    select(leads.c.lead_key, leads.c.email, leads.c.offer_key, leads.c.stage)
                )
            ),
            "events": sorted(conn.execute(select(events.c.lead_key, events.c.kind))),
            "quarantine": sorted(
                conn.execute(
                    select(raw_leads.c.source_key, quarantine.c.reason, quarantine.c.field).join(
                        raw_leads, raw_leads.c.id == quarantine.c.raw_lead_id
                    )
                )
            ),
        }


@pytest.fixture
def leads_file(tmp_path: Path) -> Path:
    return _leads_file(tmp_path / "leads.jsonl")


@pytest.fixture
def reference(tmp_path: Path, leads_file: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The store after an ingest that never starts the worker."""
    monkeypatch.setattr(pipeline, "START_AFTER_BATCHES", 10**9)
    settings = _settings(tmp_path, "reference.db", leads_file)
    store = Store(settings.store)
    ingest(_source(leads_file), store, settings)
    contents = _contents(store)
    store.dispose()
    monkeypatch.setattr(pipeline, "START_AFTER_BATCHES", 2)
    assert {reason for _, reason, _ in contents["quarantine"]} >= {"malformed", "test"}
    return contents


@pytest.fixture
def inline_parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the raw leads parsed in this process rather than taken from the worker."""
    counted: list[int] = []
    real = pipeline.parse_raw

    def counting(*args: Any, **kwargs: Any) -> Any:
        counted.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "parse_raw", counting)
    return counted


def test_the_worker_parses_and_the_store_ends_the_same(
    tmp_path: Path, leads_file: Path, reference: dict[str, Any], inline_parses: list[int]
) -> None:
    settings = _settings(tmp_path, "ahead.db", leads_file)
    store = Store(settings.store)
    report = ingest(_source(leads_file), store, settings)
    assert _contents(store) == reference
    assert report.processed == len(reference["raw"])
    # Only the first batch, the last and the few records the worker couldn't parse were
    # parsed here: the worker did the rest.
    assert len(inline_parses) < len(reference["raw"]) // 3
    store.dispose()


def test_a_worker_that_dies_midway_changes_nothing(
    tmp_path: Path,
    leads_file: Path,
    reference: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real_hand = parse_ahead.ParseAhead.hand
    handed: list[int] = []

    def hand_then_kill(self: parse_ahead.ParseAhead, raws: Any) -> None:
        real_hand(self, raws)
        handed.append(len(raws))
        if len(handed) == 3 and self._pool is not None:
            self._pool.submit(os.getpid).result()  # started, then SIGKILLed
            for process in list(self._pool._processes.values()):
                os.kill(process.pid, signal.SIGKILL)

    monkeypatch.setattr(parse_ahead.ParseAhead, "hand", hand_then_kill)
    settings = _settings(tmp_path, "killed.db", leads_file)
    store = Store(settings.store)
    with caplog.at_level(logging.WARNING, logger="leadbridge.pipeline"):
        ingest(_source(leads_file), store, settings)
    assert len(handed) > 3
    assert "the parsing worker stopped" in caplog.text
    assert _contents(store) == reference
    store.dispose()


def test_a_stopped_ingest_leaves_what_it_landed_to_the_next_run(
    tmp_path: Path, leads_file: Path, reference: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = threading.Event()
    real = pipeline._land
    landed: list[int] = []

    def land_then_stop(*args: Any, **kwargs: Any) -> int | None:
        through = real(*args, **kwargs)
        landed.append(1)
        if len(landed) == 5:
            stop.set()
        return through

    monkeypatch.setattr(pipeline, "_land", land_then_stop)
    settings = _settings(tmp_path, "stopped.db", leads_file)
    store = Store(settings.store)
    report = ingest(_source(leads_file), store, settings, stop=stop)
    assert report.fetched == 5 * BATCH
    with store.connect() as conn:
        new = conn.execute(select(raw_leads.c.id).where(raw_leads.c.status == "new")).all()
    # Landed, not yet processed: the batch handed over last and, as the stop came before
    # its processing, the one handed before it — processing never ran past what it had
    # handed over (`through`).
    assert len(new) == 2 * BATCH
    process_pending(store, settings)  # what the `process` job does next
    monkeypatch.setattr(pipeline, "_land", real)
    ingest(_source(leads_file), store, settings)  # the run after: from the cursor on
    assert _contents(store) == reference
    store.dispose()


def test_a_result_is_used_only_for_the_row_it_was_parsed_from() -> None:
    good = RawLead(
        "drop",
        "k1",
        "https",
        {
            "LeadSource": "AzureMarketplace-INS|contoso.app",
            "UserDetails": {"Email": "ana@contoso.com", "LastName": "P"},
        },
    )
    bad = RawLead("drop", "k2", "https", {"LeadSource": {"x": 1}})
    twin = RawLead("drop", "k3", "https", good.payload)
    ahead = parse_ahead.ParseAhead({"drop": "leads_file"})
    try:
        ahead.hand([good, bad, twin])
        lead = ahead.take(good)
        assert lead is not None and lead.email == "ana@contoso.com"
        with pytest.raises(MalformedLead) as found:
            ahead.take(bad)
        assert found.value.field == "leadsource"  # as the parser names it inline
        # Redacted since it was handed over: the worker's lead is not this row's.
        redacted = RawLead("drop", "k3", "https", {"LeadSource": "AzureMarketplace-INS|x.y"})
        assert ahead.take(redacted) is None
        assert ahead.take(RawLead("drop", "k4", "https", good.payload)) is None  # not handed
        assert ahead.take(good) is None  # taken once
    finally:
        ahead.close()


def test_a_key_handed_twice_keeps_the_first_as_landing_does() -> None:
    """Landing keeps the first row of a (source, source_key): so does the worker's hand,
    and a row already processed is forgotten once its batch is."""
    first = RawLead("drop", "k1", "https", _payload("a.b"))
    again = RawLead("drop", "k1", "https", _payload("c.d"))
    ahead = parse_ahead.ParseAhead({"drop": "leads_file"})
    try:
        ahead.hand([first, again])
        lead = ahead.take(first)
        assert lead is not None and lead.offer_id == "a.b"
        ahead.hand([again])  # a later batch lands the key again: the store keeps `first`
        # Handed as the source gave it; read back from the store without `received_at`.
        received = datetime(2026, 12, 1, tzinfo=UTC)
        ahead.hand([RawLead("drop", "k2", "https", first.payload, received_at=received)])
        ahead.forget_all_but_the_last()
        assert ahead.take(again) is None  # forgotten with its batch
        assert ahead.take(RawLead("drop", "k2", "https", first.payload)) is not None
    finally:
        ahead.close()


def _payload(offer: str) -> dict[str, Any]:
    return {
        "LeadSource": f"AzureMarketplace-INS|{offer}",
        "UserDetails": {"Email": "ana@contoso.com", "LastName": "P"},
    }


_KILLED_PARENT = """
import os, signal, sys
from leadbridge.core.domain.models import RawLead
from leadbridge.core.ingest.parse_ahead import ParseAhead
ahead = ParseAhead({})
ahead.hand([RawLead("s", "k", "https", {})])
ahead._pool.submit(os.getpid).result()
print([p.pid for p in ahead._pool._processes.values()][0], flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def test_the_worker_dies_with_a_killed_parent() -> None:
    """SIGKILL leaves no orphan behind: the worker notices its parent is gone."""
    import subprocess
    import sys
    import time

    done = subprocess.run(
        [sys.executable, "-c", _KILLED_PARENT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    worker = int(done.stdout.split()[0])
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker), "the parsing worker outlived its parent"


def test_a_stuck_worker_is_given_up_and_rows_are_parsed_here(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(parse_ahead, "WAIT_S", 1.0)
    raw = RawLead("drop", "k1", "https", {"LeadSource": "AzureMarketplace-INS|contoso.app"})
    ahead = parse_ahead.ParseAhead({"drop": "leads_file"})
    try:
        ahead.hand([raw])
        assert ahead._pool is not None
        ahead._pool.submit(os.getpid).result()
        worker = next(iter(ahead._pool._processes.values()))
        os.kill(worker.pid, signal.SIGSTOP)  # stuck: alive, answering nothing
        second = RawLead("drop", "k2", "https", raw.payload)
        ahead.hand([second])
        with caplog.at_level(logging.WARNING, logger="leadbridge.pipeline"):
            assert ahead.take(second) is None
        assert "the parsing worker stopped" in caplog.text
        assert ahead._pool is None  # killed, not waited for
        third = RawLead("drop", "k3", "https", raw.payload)
        ahead.hand([third])  # and not started again in this run
        assert ahead.take(third) is None
    finally:
        ahead.close()


def test_parse_worker_false_keeps_every_step_in_this_process(
    tmp_path: Path, leads_file: Path, reference: dict[str, Any], inline_parses: list[int]
) -> None:
    source = {"name": "drop", "kind": "leads_file", "path": str(leads_file)}
    settings = load_settings(
        None,
        store=f"sqlite:///{tmp_path / 'one.db'}",
        batch_size=BATCH,
        sources=[source],
        parse_worker=False,
    )
    store = Store(settings.store)
    ingest(_source(leads_file), store, settings)
    assert _contents(store) == reference
    assert len(inline_parses) == len(reference["raw"])  # every raw lead parsed here
    store.dispose()
