"""`engine: single`: one process runs every job on its interval with APScheduler 3.

The jobs are jobs.py's, each on its own interval. `max_instances=1` keeps a job from
overlapping itself, `coalesce=True` folds missed runs into one, and every job runs once at
start (the catch-up). A lead that arrives is delivered right away: landing wakes `process`, and a
process run that changed leads wakes every `deliver` job, instead of waiting for the tick.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from leadbridge.core.app.engines.jobs import Jobs, Replica
from leadbridge.core.settings import Settings
from leadbridge.core.store.repo import Store

log = logging.getLogger("leadbridge.engine")


class SingleEngine:
    """Schedules the job functions in this process; `stop` is the shutdown signal they obey."""

    def __init__(self, settings: Settings, store: Store, stop: threading.Event) -> None:
        self.settings, self.store, self.stop = settings, store, stop
        self.jobs = Jobs(settings, store, stop, wake=self._wake_at)
        self.sources, self.targets = self.jobs.sources, self.jobs.targets
        self.replica = Replica(store, "single", settings.cluster.heartbeat, buffered=True)
        workers = 2 + len(self.sources) + len(self.targets)
        if settings.alerts.channels:  # the alert sender must never wait for a thread
            workers += 2
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=workers)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone=UTC,
        )
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._wanted: dict[str, threading.Event] = {}

    def start(self) -> None:
        for schedule in self.jobs.schedules():
            self._add(schedule.job_id, schedule.every)
        self.replica.start()
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
        finished = done.wait(timeout)
        self.replica.stop()
        return finished

    def _add(self, job_id: str, every: timedelta) -> None:
        self._wanted[job_id] = threading.Event()
        self.scheduler.add_job(
            self._run,
            "interval",
            args=[job_id],
            id=job_id,
            next_run_time=datetime.now(UTC),
            seconds=every.total_seconds(),
        )

    def _run(self, job_id: str) -> None:
        """One scheduled run; it goes round again if woken while it ran."""
        with self._lock:
            self._running.add(job_id)
        try:
            while True:
                trigger = "wake" if self._wanted[job_id].is_set() else "periodic"
                self._wanted[job_id].clear()
                if not self._run_once(job_id, trigger):
                    break
                if self.stop.is_set() or not self._wanted[job_id].is_set():
                    break
        finally:
            with self._lock:
                self._running.discard(job_id)
            if self._wanted[job_id].is_set():  # woken between the last pass and here
                self._poke(job_id)

    def _run_once(self, job_id: str, trigger: str) -> bool:
        """One pass of the job body. A failure is counted (readiness) and said in one log
        line — a source whose file is missing must not print a page of traceback every
        minute — with the traceback at debug level for whoever investigates."""
        try:
            with self.replica.running(job_id, trigger):
                self.jobs.run(job_id)
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            log.error(
                "job failed; it runs again at its next period",
                extra={"job": job_id, "error": type(exc).__name__, "reason": reason[:300]},
            )
            log.debug("job failure traceback", extra={"job": job_id}, exc_info=True)
            return False
        return True

    def wake(self, job_id: str) -> None:
        """Run a job now rather than at its next tick; a running job goes round once more."""
        if self.stop.is_set() or job_id not in self._wanted:
            return
        self._wanted[job_id].set()
        with self._lock:
            if job_id in self._running:
                return
        self._poke(job_id)

    def _wake_at(self, job_id: str, at: datetime | None) -> None:
        """A job's follow-up: now, or (a vendor's pause) its next run no earlier than `at`."""
        if at is None:
            self.wake(job_id)
        elif not self.stop.is_set():
            with contextlib.suppress(JobLookupError):
                self.scheduler.modify_job(job_id, next_run_time=max(at, datetime.now(UTC)))

    def _poke(self, job_id: str) -> None:
        if self.stop.is_set():
            return
        with contextlib.suppress(JobLookupError):
            self.scheduler.modify_job(job_id, next_run_time=datetime.now(UTC))
