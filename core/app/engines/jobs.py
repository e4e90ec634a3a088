"""The jobs both engines run, by id, and the replica bookkeeping around them.

Job ids: `ingest:<source>` per polling source, `process` (raw leads pushed through the
webhook), `deliver:<target>` per target, `pull:<target>` per target whose stage sync pulls or whose
opt-outs can be read (consent flows between CRMs whatever the stage sync),
`retention` daily (personal data past `retention:` redacted), `erasures` (what a target
couldn't delete at `leads forget` time, asked again), `rescore` daily when fit ×
engagement scoring is configured, `alerts:send` and
`alerts:watch` when alert channels are (docs/alerts.md).
An engine decides when and where a job runs; `Jobs.run` is what running it means, so the
single engine and the cluster run exactly the same code. A job asks for follow-up work
through `wake` (a lead changed: deliver it now; a vendor said wait: deliver then), and the
engine turns that into its own kind of scheduling.

Every run is recorded in `job_runs` and every replica beats in `replicas`, which is how
`leadbridge status` shows each replica and what it is doing, in either engine. Each replica
also counts, in memory, how many runs of each job have failed in a row (`JobStreak`):
`/readyz` turns unready on it, so a replica whose processing fails on every run says so
even while the store answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from leadbridge.core.alerts import outbox as alert_outbox
from leadbridge.core.alerts.send import send_due, unloadable
from leadbridge.core.alerts.watch import watch
from leadbridge.core.app import alerting
from leadbridge.core.connector import (
    ConsentReader,
    HttpTarget,
    PushReceiver,
    RecordLinks,
    Source,
    build,
)
from leadbridge.core.delivery.deliver import DeliveryReport, deliver
from leadbridge.core.ingest.pipeline import ingest, process_pending
from leadbridge.core.settings import Settings
from leadbridge.core.store import runs
from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.support.whoami import replica_name
from leadbridge.core.sync.consentsync import pull_opt_outs
from leadbridge.core.sync.erasure import carry_out
from leadbridge.core.sync.rescore import rescore
from leadbridge.core.sync.retention import prune
from leadbridge.core.sync.stagesync import pull_stages

log = logging.getLogger("leadbridge.engine")
PROCESS_EVERY = timedelta(seconds=10)
ALERTS_EVERY = timedelta(seconds=30)  # the alert sender, when nothing wakes it sooner
RETENTION_EVERY = timedelta(days=1)  # personal data past `retention:` is redacted daily
ERASURES_EVERY = timedelta(minutes=15)  # an erasure a target couldn't confirm, asked again
RESCORE_EVERY = timedelta(days=1)  # fit × engagement decays by the day (docs/scoring.md)
KEEP_RUNS = timedelta(days=7)
KEEP_ALERTS = timedelta(days=30)  # older than any fact that could be reported again
KEEP_GONE_REPLICAS = timedelta(days=1)
PRUNE_EVERY_S = 3600.0
FOLLOW_UPS_EVERY_S = 600.0  # SLA alerts are judged every 10 minutes

Wake = Callable[[str, datetime | None], None]


@dataclass(frozen=True)
class Schedule:
    job_id: str
    every: timedelta


@dataclass(frozen=True)
class JobStreak:
    """A job's recent record on this replica: failed runs in a row (0 after a success) and
    the last failure's exception class — never its message, which may carry an email."""

    failures: int = 0
    error: str | None = None


class Jobs:
    """The job bodies, with the sources and targets built once per process."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        stop: threading.Event,
        wake: Wake,
    ) -> None:
        self.settings, self.store, self.stop, self.wake = settings, store, stop, wake
        self.sources = [build(c) for c in settings.source_configs()]
        self.targets: list[HttpTarget] = [
            build(c, placeholder=settings.placeholder) for c in settings.target_configs()
        ]
        self._sources = {s.name: s for s in self.sources}
        self._targets = {t.name: t for t in self.targets}
        self._fatal_until: dict[str, float] = {}
        self._alerts_pruned = 0.0
        self._followups_at = float("-inf")  # the first watch judges them
        if settings.alerts.channels:
            for channel in unloadable(settings.alerts):
                log.warning("apprise cannot load this channel's URL", extra={"channel": channel})

    def schedules(self) -> list[Schedule]:
        """Every job and how often it runs when nothing wakes it."""
        out = [
            Schedule(f"ingest:{s.name}", s.config.every)
            for s in self.sources
            if not isinstance(s, PushReceiver)  # pushed to the webhook: nothing to poll
        ]
        out.append(Schedule("process", PROCESS_EVERY))
        for target in self.targets:
            out.append(Schedule(f"deliver:{target.name}", target.config.every))
            if target.policy().pulls or isinstance(target, ConsentReader):
                out.append(Schedule(f"pull:{target.name}", target.config.pull_every))
        kept = self.settings.retention
        if kept.raw_days is not None or kept.quarantine_days is not None:
            out.append(Schedule("retention", RETENTION_EVERY))
        if self.settings.privacy.suppression_key is not None:  # `leads forget` is possible
            out.append(Schedule("erasures", ERASURES_EVERY))
        if self.settings.qualification.graded:  # one number never changes with time
            out.append(Schedule("rescore", RESCORE_EVERY))
        if self.settings.alerts.channels:  # no channel, no alert jobs: as before alerts
            out.append(Schedule("alerts:send", ALERTS_EVERY))
            out.append(Schedule("alerts:watch", self.settings.alerts.watch_every))
        return out

    def run(self, job_id: str) -> None:
        kind, _, name = job_id.partition(":")
        if kind == "ingest":
            self._ingest(self._sources[name])
        elif kind == "process":
            self._process()
        elif kind == "deliver":
            self._deliver(self._targets[name])
        elif kind == "pull":
            self._pull(self._targets[name])
        elif job_id == "alerts:send":
            self._send_alerts()
        elif job_id == "alerts:watch":
            self._watch()
        elif job_id == "retention":
            prune(self.store, self.settings.retention, utcnow())
        elif job_id == "erasures":  # what a target couldn't delete at `forget` time
            carry_out(self.store, self.targets, utcnow())
        elif kind == "rescore":
            self._rescore()
        else:
            raise ValueError(f"unknown job {job_id!r}")

    def wake_delivery(self) -> None:
        for target in self.targets:
            self.wake(f"deliver:{target.name}", None)

    def _ingest(self, source: Source) -> None:
        report = ingest(source, self.store, self.settings, stop=self.stop)
        if report.leads_created or report.leads_updated:
            self.wake_delivery()

    def _process(self) -> None:
        report = process_pending(self.store, self.settings, stop=self.stop)
        if report.leads_created or report.leads_updated:
            self.wake_delivery()

    def _rescore(self) -> None:
        """The daily rescore: grades change with time; what a CRM must learn goes out now."""
        report = rescore(self.store, self.settings, stop=self.stop)
        if report.queued:
            self.wake_delivery()

    def _pull(self, target: HttpTarget) -> None:
        """A stage read calls the same CRM as delivery: a vendor's pause holds it too
        (pull_stages honours it; the next periodic run reads again). Its opt-outs are read
        with its stages (core/sync/consentsync.py) — and without them when its stage sync
        only pushes: an opt-out made there still reaches every other target."""
        moved = False
        if target.policy().pulls:
            report = pull_stages(
                self.targets, self.store, self.settings, only=[target.name], stop=self.stop
            )
            moved = bool(report.applied or report.refused)
        consent = pull_opt_outs(self.targets, self.store, self.settings, only=[target.name])
        if moved or consent.leads:
            self.wake_delivery()

    def _deliver(self, target: HttpTarget) -> None:
        """Deliver, unless credentials were refused lately. A vendor's pause, whichever
        process was told, is honoured inside `deliver` (it reads the store), and the next
        run is planned for when it ends."""
        if time.monotonic() < self._fatal_until.get(target.name, 0.0):
            return  # credentials were refused: try again after `delivery.fatal_retry`
        report = deliver(
            target, self.store, self.settings, stop=self.stop, on_batch=self._alert_after
        )
        if report.fatal:
            retry = self.settings.delivery.fatal_retry.total_seconds()
            self._fatal_until[target.name] = time.monotonic() + retry
        elif (report.pause or report.retrying) and report.paused_until is not None:
            self.wake(f"deliver:{target.name}", report.paused_until)

    def _alert_after(self, report: DeliveryReport) -> None:
        """After each delivered batch (not the whole drain, which runs on while leads keep
        arriving): a hot lead the CRM just confirmed goes out now."""
        if report.pushed and self.settings.alerts.channels:
            self.wake("alerts:send", None)

    def _send_alerts(self) -> None:
        """Send what the alert outbox has due; come back when a back-off or window ends."""
        links = {t.name: t for t in self.targets if isinstance(t, RecordLinks)}

        def record_url(target: str, external_id: str) -> str | None:
            found = links.get(target)
            return found.record_url(external_id) if found is not None else None

        report = send_due(self.store, self.settings.alerts, record_url=record_url)
        if report.next_due is not None:
            self.wake("alerts:send", report.next_due)

    def _watch(self) -> None:
        """Targets down or back, new dead letters, follow-ups due, the daily digest."""
        queued = watch(self.store, self.settings).queued
        if time.monotonic() - self._alerts_pruned > PRUNE_EVERY_S:
            with self.store.begin() as conn:  # sent and dropped alerts, after a month
                alert_outbox.prune(conn, utcnow() - KEEP_ALERTS)
            self._alerts_pruned = time.monotonic()
        if time.monotonic() - self._followups_at > FOLLOW_UPS_EVERY_S:
            # The funnel's SLA reads the histories of the leads active in its window (a
            # few days): cheap, but the alerts it raises need no minute's precision.
            queued += alerting.follow_ups(self.store, self.settings)
            self._followups_at = time.monotonic()
        queued += alerting.digest(self.store, self.settings)
        if queued:
            self.wake("alerts:send", None)


class Replica:
    """This process as the store sees it: a heartbeat row and a record of every job run.

    `buffered` (the single engine): finished runs are kept in memory and written with the
    next heartbeat, in one transaction — on SQLite, two commits per run would queue behind
    the webhook's landings for the one write lock (measured: webhook-to-CRM p95 0.4 s → 1.0
    s in bench/daemon.py). Unbuffered (the cluster): each run's start is committed before
    its body runs, so a run a replica died in is on record, and the others can be checked
    against it.
    """

    def __init__(
        self, store: Store, engine: str, heartbeat: timedelta, *, buffered: bool = False
    ) -> None:
        self.store, self.engine, self.heartbeat = store, engine, heartbeat
        self.buffered = buffered
        self.name = replica_name()
        self._doing: dict[str, int] = {}
        self._streaks: dict[str, JobStreak] = {}
        self._finished: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pruned_at = 0.0

    def start(self) -> None:
        self.beat()
        threading.Thread(target=self._beat_forever, name="heartbeat", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        try:
            self.beat()  # the last buffered runs
            with self.store.begin() as conn:
                runs.stopped(conn, self.name, utcnow())
        except Exception:  # the store may be the thing that is down; the row then ages out
            log.warning("could not record this replica as stopped", exc_info=True)

    def doing(self) -> list[str]:
        with self._lock:
            return sorted(job for job, count in self._doing.items() if count)

    def streaks(self) -> dict[str, JobStreak]:
        """Every job this replica has run, with its failures in a row (for /readyz)."""
        with self._lock:
            return dict(self._streaks)

    def _count(self, job_id: str, error: str | None) -> None:
        with self._lock:
            if error is None:
                self._streaks[job_id] = JobStreak()
            else:
                failures = self._streaks.get(job_id, JobStreak()).failures + 1
                self._streaks[job_id] = JobStreak(failures, error)

    def beat(self) -> None:
        now = utcnow()
        with self._lock:
            finished, self._finished = self._finished, []
        try:
            with self.store.begin() as conn:
                runs.beat(conn, self.name, self.engine, self.doing(), now)
                runs.add_runs(conn, finished)
                if time.monotonic() - self._pruned_at > PRUNE_EVERY_S:
                    runs.prune(conn, now, KEEP_RUNS, KEEP_GONE_REPLICAS)
                    self._pruned_at = time.monotonic()
        except Exception:
            with self._lock:  # kept for the next beat
                self._finished[:0] = finished
            raise

    def _beat_forever(self) -> None:
        while not self._stop.wait(self.heartbeat.total_seconds()):
            try:
                self.beat()
            except Exception:  # a store outage must not kill the heartbeat for good
                log.warning("heartbeat not recorded; retrying", exc_info=True)

    @contextmanager
    def running(self, job_id: str, trigger: str, period: int | None = None) -> Iterator[None]:
        """Record one run of a job (start, end, outcome) around its body."""
        with self._lock:
            self._doing[job_id] = self._doing.get(job_id, 0) + 1
        started, outcome = utcnow(), "error"
        run_id: int | None = None
        error: str | None = "Interrupted"
        try:
            if not self.buffered:
                with self.store.begin() as conn:
                    run_id = runs.run_started(conn, job_id, self.name, trigger, period, started)
            yield
            outcome, error = "ok", None
        except Exception as exc:
            error = type(exc).__name__
            raise
        finally:
            self._count(job_id, error)
            with self._lock:
                self._doing[job_id] -= 1
            if run_id is not None:
                with self.store.begin() as conn:
                    runs.run_finished(conn, run_id, outcome, utcnow())
            elif self.buffered:
                row: dict[str, object] = {
                    "job": job_id,
                    "replica": self.name,
                    "trigger": trigger,
                    "period": period,
                }
                row |= {"started_at": started, "finished_at": utcnow(), "outcome": outcome}
                with self._lock:
                    self._finished.append(row)
