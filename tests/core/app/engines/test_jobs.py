"""The replica bookkeeping both engines share: heartbeats, job runs, and what status makes of
them; and the single engine recording its runs."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import responses as responses_lib

from leadbridge.core.app import status as store_status
from leadbridge.core.app.engines.apscheduler import SingleEngine
from leadbridge.core.app.engines.jobs import Jobs, JobStreak, Replica
from leadbridge.core.app.synthetic import write_jsonl
from leadbridge.core.connector import sandboxes
from leadbridge.core.delivery.pauses import read_pause
from leadbridge.core.domain.models import RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import load_settings
from leadbridge.core.store import runs
from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.support.whoami import replica_name


def test_a_run_is_recorded_with_its_outcome_and_shows_while_it_runs(store: Store) -> None:
    replica = Replica(store, "single", timedelta(seconds=5))
    replica.beat()
    with replica.running("deliver:sales", "periodic", 1_800_000_000):
        assert replica.doing() == ["deliver:sales"]
        replica.beat()
        with store.connect() as conn:
            shown = store_status.replica_rows(conn, utcnow(), timedelta(seconds=30))
        assert shown[0]["doing"] == ["deliver:sales"] and shown[0]["state"] == "up"
    with pytest.raises(RuntimeError), replica.running("ingest:table", "wake"):
        raise RuntimeError("the source broke")
    with store.connect() as conn:
        last = runs.last_runs(conn)
    assert last["deliver:sales"].outcome == "ok" and last["deliver:sales"].period == 1_800_000_000
    assert last["ingest:table"].outcome == "error" and last["ingest:table"].finished_at
    assert replica.doing() == []


def test_a_buffered_replica_writes_its_runs_with_the_next_heartbeat(store: Store) -> None:
    """The single engine's way: no commit per run, one per heartbeat (SQLite's one writer
    stays free for the webhook's landings)."""
    replica = Replica(store, "single", timedelta(seconds=5), buffered=True)
    replica.beat()
    with replica.running("process", "wake"):
        pass
    with store.connect() as conn:
        assert runs.last_runs(conn) == {}
    replica.beat()
    with store.connect() as conn:
        run = runs.last_runs(conn)["process"]
    assert run.outcome == "ok" and run.trigger == "wake" and run.replica == replica.name
    assert run.started_at <= run.finished_at


def test_status_tells_up_stopped_and_lost_replicas(store: Store) -> None:
    now = utcnow()
    with store.begin() as conn:
        runs.beat(conn, "a:1", "cluster", ["process"], now)
        runs.beat(conn, "b:2", "cluster", ["deliver:hook"], now - timedelta(minutes=2))
        runs.beat(conn, "c:3", "cluster", [], now)
        runs.stopped(conn, "c:3", now)
    with store.connect() as conn:
        shown = {r["name"]: r for r in store_status.replica_rows(conn, now, timedelta(seconds=30))}
    assert shown["a:1"]["state"] == "up" and shown["a:1"]["doing"] == ["process"]
    assert shown["b:2"]["state"] == "lost" and shown["b:2"]["doing"] == []  # not doing: dead
    assert shown["c:3"]["state"] == "stopped"
    with store.connect() as conn:
        assert store_status.status(conn, [], [])["queue"] is None  # SQLite: no cluster queue


def test_gone_replicas_and_old_runs_are_pruned(store: Store) -> None:
    now = utcnow()
    with store.begin() as conn:
        runs.beat(conn, "old:1", "single", [], now - timedelta(days=2))
        runs.beat(conn, "new:2", "single", [], now)
        runs.run_started(conn, "process", "old:1", "periodic", None, now - timedelta(days=8))
        runs.run_started(conn, "process", "new:2", "periodic", None, now)
        runs.prune(conn, now, timedelta(days=7), timedelta(days=1))
        assert [r.name for r in runs.list_replicas(conn)] == ["new:2"]
        assert runs.last_runs(conn)["process"].replica == "new:2"


def test_the_schedules_are_every_polling_source_process_and_each_target(
    make_settings, tmp_path: Path
) -> None:
    settings = make_settings(
        f"""
store: sqlite:///{tmp_path / "lb.db"}
sources:
  - {{name: file, kind: leads_file, path: {tmp_path / "x.jsonl"}, every: 90s}}
  - {{name: hook, kind: marketplace_https, token: a-long-random-token-123}}
targets:
  - {{name: hook, kind: webhook, url: "http://127.0.0.1:9/leads", secret: s3cret-s3cret, every: 7s}}
"""
    )
    jobs = Jobs(settings, Store(settings.store), threading.Event(), wake=lambda *_: None)
    schedules = {s.job_id: s.every.total_seconds() for s in jobs.schedules()}
    day = 86400
    assert schedules == {"ingest:file": 90, "process": 10, "deliver:hook": 7, "retention": day}
    with pytest.raises(ValueError, match="unknown job"):
        jobs.run("reticulate:splines")
    jobs.run("retention")  # nothing past retention in an empty store: it just runs


def test_retention_kept_forever_has_no_job(make_settings, tmp_path: Path) -> None:
    settings = make_settings(
        f"""
store: sqlite:///{tmp_path / "lb.db"}
retention: {{raw_days: null, quarantine_days: null}}
"""
    )
    jobs = Jobs(settings, Store(settings.store), threading.Event(), wake=lambda *_: None)
    assert "retention" not in {s.job_id for s in jobs.schedules()}


def test_erasures_are_asked_again_when_forget_is_possible(make_settings, tmp_path: Path) -> None:
    settings = make_settings(
        f"""
store: sqlite:///{tmp_path / "lb.db"}
privacy: {{suppression_key: a-long-random-suppression-secret}}
"""
    )
    jobs = Jobs(settings, Store(settings.store), threading.Event(), wake=lambda *_: None)
    assert {s.job_id: s.every.total_seconds() for s in jobs.schedules()}["erasures"] == 900
    jobs.run("erasures")  # none open: it just runs


def test_the_single_engine_records_its_runs_and_says_goodbye(tmp_path: Path) -> None:
    leads = tmp_path / "leads.jsonl"
    write_jsonl(leads, 20)
    settings = load_settings(
        None,
        store=f"sqlite:///{tmp_path / 'lb.db'}",
        sources=[{"name": "file", "kind": "leads_file", "path": str(leads)}],
    )
    store = Store(settings.store)
    engine = SingleEngine(settings, store, threading.Event())
    engine.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with store.connect() as conn:
                done = runs.last_runs(conn).get("ingest:file")
            if done is not None and done.outcome == "ok":
                break
            time.sleep(0.1)
        assert done is not None and done.replica == replica_name()
    finally:
        assert engine.shutdown(20)
    with store.connect() as conn:
        (me,) = runs.list_replicas(conn)
    assert me.name == replica_name() and me.engine == "single" and me.stopped_at is not None


@responses_lib.activate
def test_a_vendors_pause_binds_every_replica(make_settings, tmp_path: Path) -> None:
    """Replica A is told Retry-After: 120; replica B, delivering the next lead to the same
    target, sends nothing before then and plans its next run for when the pause ends."""
    url = "http://127.0.0.1:9/leads"
    settings = make_settings(
        f"""
store: sqlite:///{tmp_path / "lb.db"}
targets:
  - {{name: hook, kind: webhook, url: "{url}", secret: s3cret-s3cret}}
"""
    )
    store = Store(settings.store)

    def add_lead(n: int) -> None:
        payload = {"LeadSource": "AzurePortal-Create|c.o", "UserDetails": {"Email": f"p{n}@x.io"}}
        pipeline.land_one(
            store, RawLead(source="s", source_key=str(n), kind="https", payload=payload)
        )
        pipeline.process_pending(store, settings)

    responses_lib.add(responses_lib.POST, url, status=503, headers={"Retry-After": "120"})
    add_lead(1)
    woken: list[tuple[str, object]] = []
    replica_a = Jobs(settings, store, threading.Event(), wake=lambda *a: woken.append(a))
    replica_a.run("deliver:hook")
    assert len(responses_lib.calls) >= 1
    calls = len(responses_lib.calls)

    add_lead(2)  # due now, and never tried: only the shared pause holds it back
    replica_b = Jobs(settings, store, threading.Event(), wake=lambda *a: woken.append(a))
    replica_b.run("deliver:hook")
    assert len(responses_lib.calls) == calls  # not one request before the Retry-After
    job, until = woken[-1]
    assert job == "deliver:hook"
    assert timedelta(seconds=110) < until - utcnow() <= timedelta(seconds=120)


def test_a_pause_a_stage_read_was_given_holds_delivery_and_the_next_reads(
    tmp_path: Path,
) -> None:
    """Stage reads call the same CRM: a REQUEST_LIMIT_EXCEEDED met by a read is kept in the
    store, and a daemon started afterwards neither reads nor delivers until it ends."""
    running = sandboxes.start(["salesforce"])
    crm = running["salesforce"]
    try:
        settings = load_settings(
            None,
            store=f"sqlite:///{tmp_path / 'lb.db'}",
            targets=[sandboxes.target_entry("salesforce", crm)],
        )
        store = Store(settings.store)
        payload = {"LeadSource": "AzurePortal-Create|c.o", "UserDetails": {"Email": "p@x.io"}}
        pipeline.land_one(store, RawLead(source="s", source_key="1", kind="https", payload=payload))
        pipeline.process_pending(store, settings)
        crm.faults.throttle_next = 1
        first = Jobs(settings, store, threading.Event(), wake=lambda *a: None)
        first.run("pull:sales")
        assert crm.api_calls() == 1
        with store.connect() as conn:
            pause = read_pause(conn, "sales", utcnow())
        assert pause is not None and "REQUEST_LIMIT_EXCEEDED" in pause.why

        woken: list[tuple[str, object]] = []
        restarted = Jobs(settings, store, threading.Event(), wake=lambda *a: woken.append(a))
        restarted.run("pull:sales")
        restarted.run("deliver:sales")
        assert crm.api_calls() == 1  # nothing read, nothing sent inside the pause
        [(job, until)] = woken  # the next delivery is planned for when the pause ends
        assert job == "deliver:sales" and abs(until - pause.until) < timedelta(seconds=1)
    finally:
        sandboxes.stop(running)


def _wait_for(condition, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_the_single_engine_counts_a_jobs_failures_in_a_row_until_it_recovers(
    tmp_path: Path,
) -> None:
    """The source's file is missing: every ingest run fails, and the replica says which job
    and how (what /readyz reports); once the file is there, the next run clears it."""
    leads = tmp_path / "leads.jsonl"
    settings = load_settings(
        None,
        store=f"sqlite:///{tmp_path / 'lb.db'}",
        sources=[{"name": "file", "kind": "leads_file", "path": str(leads), "every": "1s"}],
    )
    engine = SingleEngine(settings, Store(settings.store), threading.Event())
    records: list[logging.LogRecord] = []
    handler = _Collect(records)
    logging.getLogger().addHandler(handler)
    engine.start()
    try:

        def streak() -> JobStreak:
            return engine.replica.streaks().get("ingest:file", JobStreak())

        _wait_for(lambda: streak().failures >= 3, "three failures in a row")
        assert streak().error == "FileNotFoundError"
        # Said in one line per run, not a page of traceback every period.
        failed = [r for r in records if r.levelno >= logging.ERROR]
        assert failed and all(r.exc_info is None for r in failed)
        assert {getattr(r, "job", None) for r in failed} == {"ingest:file"}
        assert engine.replica.streaks()["process"].failures == 0
        write_jsonl(leads, 3)
        _wait_for(lambda: streak().failures == 0, "a run that succeeds")
    finally:
        logging.getLogger().removeHandler(handler)
        assert engine.shutdown(20)


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_target_that_only_pushes_stages_still_has_its_opt_outs_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Consent flows between CRMs whatever the stage sync (issue 17): a CRM whose opt-outs
    can be read gets its `pull:` job even when its stages are only pushed, and that job
    reads the opt-outs, not the stages."""
    from leadbridge.core.app.engines import jobs as jobs_module

    running = sandboxes.start(["hubspot"])
    try:
        entry = sandboxes.target_entry("hubspot", running["hubspot"]) | {"stage_sync": "push"}
        settings = load_settings(None, store=f"sqlite:///{tmp_path / 'lb.db'}", targets=[entry])
        name = entry["name"]
        read: list[str] = []
        monkeypatch.setattr(jobs_module, "pull_stages", lambda *a, **k: read.append("stages"))
        real = jobs_module.pull_opt_outs

        def opt_outs(*args: object, **kwargs: object) -> object:
            read.append("opt-outs")
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(jobs_module, "pull_opt_outs", opt_outs)
        jobs = Jobs(settings, Store(settings.store), threading.Event(), wake=lambda *_: None)
        assert f"pull:{name}" in {s.job_id for s in jobs.schedules()}
        jobs.run(f"pull:{name}")
        assert read == ["opt-outs"]
    finally:
        sandboxes.stop(running)
