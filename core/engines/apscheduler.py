"""`engine: single`: one process runs every job on its interval with APScheduler 3.

Jobs: `ingest:<source>` per polling source, `process` (raw leads pushed through the
webhook), `deliver:<target>` per target. `max_instances=1` keeps a job from overlapping
itself, `coalesce=True` folds missed runs into one, and every job runs once at start (the
catch-up). A lead that arrives is delivered right away: landing wakes `process`, and a
process run that changed leads wakes every `deliver` job, instead of waiting for the tick.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from leadbridge.connectors.base import build
from leadbridge.core.delivery import deliver
from leadbridge.core.pipeline import ingest, process_pending
from leadbridge.core.settings import Settings
from leadbridge.core.stagesync import pull_stages
from leadbridge.core.store.repo import Store

log = logging.getLogger("leadbridge.engine")
PROCESS_EVERY = timedelta(seconds=10)


class SingleEngine:
    """Schedules the job functions in this process; `stop` is the shutdown signal they obey."""

    def __init__(self, settings: Settings, store: Store, stop: threading.Event) -> None:
        self.settings, self.store, self.stop = settings, store, stop
        self.sources = [build(c) for c in settings.source_configs()]
        self.targets = [
            build(c, placeholder=settings.placeholder) for c in settings.target_configs()
        ]
        workers = 2 + len(self.sources) + len(self.targets)
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=workers)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone=UTC,
        )
        self._fatal_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._wanted: dict[str, threading.Event] = {}

    def start(self) -> None:
        for source in self.sources:
            if not getattr(source, "push", False):
                self._add(
                    f"ingest:{source.name}", lambda s=source: self._ingest(s), source.config.every
                )
        self._add("process", self._process, PROCESS_EVERY)
        for target in self.targets:
            self._add(
                f"deliver:{target.name}", lambda t=target: self._deliver(t), target.config.every
            )
            if target.policy().pulls:
                self._add(
                    f"pull:{target.name}", lambda t=target: self._pull(t), target.config.pull_every
                )
        self.scheduler.start()
        log.info("scheduler started", extra={"jobs": [j.id for j in self.scheduler.get_jobs()]})

    def shutdown(self, timeout: float) -> bool:
        """Stop taking work and wait for the jobs in hand; False if they outlived `timeout`."""
        self.stop.set()
        done = threading.Event()

        def wait_for_jobs() -> None:
            self.scheduler.shutdown(wait=True)
            done.set()

        threading.Thread(target=wait_for_jobs, daemon=True).start()
        return done.wait(timeout)

    def _add(self, job_id: str, work: Any, every: timedelta) -> None:
        self._wanted[job_id] = threading.Event()
        self.scheduler.add_job(
            self._run,
            "interval",
            args=[job_id, work],
            id=job_id,
            next_run_time=datetime.now(UTC),
            seconds=every.total_seconds(),
        )

    def _run(self, job_id: str, work: Any) -> None:
        """One scheduled run; it goes round again if woken while it ran."""
        with self._lock:
            self._running.add(job_id)
        try:
            while True:
                self._wanted[job_id].clear()
                work()
                if self.stop.is_set() or not self._wanted[job_id].is_set():
                    break
        finally:
            with self._lock:
                self._running.discard(job_id)
            if self._wanted[job_id].is_set():  # woken between the last pass and here
                self._poke(job_id)

    def wake(self, job_id: str) -> None:
        """Run a job now rather than at its next tick; a running job goes round once more."""
        if self.stop.is_set() or job_id not in self._wanted:
            return
        self._wanted[job_id].set()
        with self._lock:
            if job_id in self._running:
                return
        self._poke(job_id)

    def _poke(self, job_id: str) -> None:
        if self.stop.is_set():
            return
        with contextlib.suppress(JobLookupError):
            self.scheduler.modify_job(job_id, next_run_time=datetime.now(UTC))

    def wake_delivery(self) -> None:
        for target in self.targets:
            self.wake(f"deliver:{target.name}")

    # --- the jobs ------------------------------------------------------------------------

    def _ingest(self, source: Any) -> None:
        report = ingest(source, self.store, self.settings, stop=self.stop)
        if report.leads_created or report.leads_updated:
            self.wake_delivery()

    def _process(self) -> None:
        report = process_pending(self.store, self.settings, stop=self.stop)
        if report.leads_created or report.leads_updated:
            self.wake_delivery()

    def _pull(self, target: Any) -> None:
        report = pull_stages(
            self.targets, self.store, self.settings, only=[target.name], stop=self.stop
        )
        if report.applied or report.refused:
            self.wake_delivery()

    def _deliver(self, target: Any) -> None:
        if time.monotonic() < self._fatal_until.get(target.name, 0.0):
            return  # credentials were refused: try again after `delivery.fatal_retry`
        report = deliver(target, self.store, self.settings, stop=self.stop)
        if report.fatal:
            retry = self.settings.delivery.fatal_retry.total_seconds()
            self._fatal_until[target.name] = time.monotonic() + retry
        elif report.retrying and report.paused_until is not None:
            self.scheduler.modify_job(
                f"deliver:{target.name}", next_run_time=max(report.paused_until, datetime.now(UTC))
            )
