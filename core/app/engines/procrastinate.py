"""`engine: cluster`: every replica is `leadbridge run`; they share the work through a
procrastinate queue in the store's own PostgreSQL database.

Why procrastinate and not APScheduler: APScheduler 3 cannot share a job store between
processes. Here every job (see jobs.py) is one procrastinate task, `leadbridge.job`,
deferred with:

- `lock=<job id>` (process and sweep excepted): one `deliver` per target, one poll per source, one
  stage pull per target at a time across the whole cluster;
- `queueing_lock=<job id>`: at most one waiting job of each id, so wake-ups and periodic
  defers never pile up behind a slow run — the waiting one picks up everything;
- periodic runs through procrastinate's periodic-defer record (`defer_periodic_job`,
  unique on job and period), so each period's run is deferred once across the cluster
  whichever replicas are up. Periods are the config's `every` intervals, not cron, so
  `every: 90s` means what it says.

A replica that dies (SIGKILL, node lost) leaves its job `doing` and its lock held; its
procrastinate heartbeat stops, and the periodic `sweep` job (one sweeper at a time, by an
advisory lock) sends such stalled jobs back to the queue after `cluster.stalled_after`.
What the dead run had half done is safe to redo: landing is idempotent, processing is
transactional, and delivery is an upsert whose outbox claim expires (`delivery.claim_ttl`).

The worker runs on its own asyncio loop in a thread; the job bodies run in that loop's
thread pool (procrastinate runs sync tasks in threads). If PostgreSQL goes away the worker
stops; the loop here restarts it with back-off until the database is back or the daemon
stops, and what was deferred stays in the queue.

A vendor's pause (Retry-After, REQUEST_LIMIT_EXCEEDED) is kept in the store (core/delivery.py),
so the next delivery or stage read of that CRM waits for it whichever replica runs it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import procrastinate
from procrastinate import exceptions as pexc
from procrastinate.job_context import JobContext
from procrastinate.jobs import Status
from procrastinate.schema import SchemaManager
from sqlalchemy import text
from sqlalchemy.engine import make_url

from leadbridge.core.app.engines.jobs import Jobs, Replica, Schedule
from leadbridge.core.settings import Settings
from leadbridge.core.store import state
from leadbridge.core.store.repo import Store, utcnow

log = logging.getLogger("leadbridge.engine")
TASK = "leadbridge.job"
SWEEP = "sweep"
SCHEMA_CURSOR = state.QUEUE_SCHEMA.name  # where the queue schema's version is kept
RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0)
CLEAN_EVERY_S = 3600.0
KEEP_ENDED_JOBS_H = 24 * 7
SWEEP_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended('leadbridge:sweep', 0))"


def conninfo(store_url: str) -> str:
    """The store's SQLAlchemy URL as libpq understands it (procrastinate speaks psycopg)."""
    url = make_url(store_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def prepare_schema(store: Store) -> None:
    """Create procrastinate's tables once, whichever replica starts first.

    The schema is procrastinate's own (schema.sql of the pinned version); leadbridge
    records that version and refuses to start on a schema from another one, naming the fix,
    rather than run a queue whose SQL functions don't match the code.
    """
    version = procrastinate.__version__
    with store.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('leadbridge:schema', 0))"))
        exists = conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar()
        recorded = state.get(conn, state.QUEUE_SCHEMA)
        if exists is None:
            # Straight to psycopg without parameters, so the SQL's own % signs stay as they are.
            driver = conn.connection.driver_connection
            assert driver is not None  # None only once a connection is closed: this one is open
            driver.execute(SchemaManager.get_schema())
            state.put(conn, state.QUEUE_SCHEMA, version, utcnow())
            log.info("procrastinate schema created", extra={"version": version})
        elif recorded is None:
            state.put(conn, state.QUEUE_SCHEMA, version, utcnow())  # made by hand: adopt it
        elif recorded != version:
            raise RuntimeError(
                f"the queue schema in this database is procrastinate {recorded}, this "
                f"leadbridge runs procrastinate {version}: apply procrastinate's migrations "
                f"from {recorded} to {version} (see `procrastinate schema --migrations-path`), "
                f"then set the cursor {SCHEMA_CURSOR!r} to {version!r}"
            )


class ClusterEngine:
    """One replica of the cluster: a procrastinate worker plus the periodic deferrer."""

    def __init__(self, settings: Settings, store: Store, stop: threading.Event) -> None:
        self.settings, self.store, self.stop = settings, store, stop
        self.cluster = settings.cluster
        self.jobs = Jobs(settings, store, stop, wake=self._wake_at)
        self.sources, self.targets = self.jobs.sources, self.jobs.targets
        self.replica = Replica(store, "cluster", self.cluster.heartbeat)
        self.schedules = [*self.jobs.schedules(), Schedule(SWEEP, self.cluster.sweep_every)]
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=conninfo(settings.store),
                min_size=1,
                max_size=self.cluster.concurrency + 4,
            )
        )
        self.task = self.app.task(name=TASK, queue=self.cluster.queue, pass_context=True)(self._job)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._done = threading.Event()
        self._astop: asyncio.Event | None = None
        self._cleaned_at = float("-inf")

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        prepare_schema(self.store)
        self.replica.start()
        threading.Thread(target=self._thread, name="procrastinate", daemon=True).start()
        self._ready.wait(30)
        log.info(
            "cluster replica started",
            extra={"replica": self.replica.name, "jobs": [s.job_id for s in self.schedules]},
        )

    def shutdown(self, timeout: float) -> bool:
        """Stop taking jobs, let the ones in hand finish their batch; False past `timeout`."""
        self.stop.set()
        if self._loop is not None and self._astop is not None:
            self._loop.call_soon_threadsafe(self._astop.set)
        finished = self._done.wait(timeout)
        self.replica.stop()
        return finished

    def _thread(self) -> None:
        try:
            asyncio.run(self._main())
        finally:
            self._done.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        # Job bodies are sync and run in the loop's default executor: size it to the
        # concurrency, plus room for wake-ups deferred from those same threads.
        self._loop.set_default_executor(
            concurrent.futures.ThreadPoolExecutor(self.cluster.concurrency + 2, "job")
        )
        self._astop = asyncio.Event()
        self._ready.set()
        failures = 0
        while not self._astop.is_set():
            started = time.monotonic()
            try:
                async with self.app.open_async():
                    await self._work()
            except Exception:
                log.exception("queue worker failed; restarting it")
            if self._astop.is_set():
                break
            failures = 0 if time.monotonic() - started > 60 else failures + 1
            pause = RESTART_BACKOFF[min(failures, len(RESTART_BACKOFF) - 1)]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._astop.wait(), pause)

    async def _work(self) -> None:
        """The worker and the periodic deferrer until stop, or until the worker gives up."""
        assert self._astop is not None
        worker = asyncio.create_task(
            self.app.run_worker_async(
                queues=[self.cluster.queue],
                concurrency=self.cluster.concurrency,
                name=self.replica.name,
                install_signal_handlers=False,
                delete_jobs="successful",
                update_heartbeat_interval=self.cluster.heartbeat.total_seconds(),
                stalled_worker_timeout=self.cluster.stalled_after.total_seconds(),
                fetch_job_polling_interval=1.0,
                shutdown_graceful_timeout=20.0,
            )
        )
        deferrer = asyncio.create_task(self._defer_periodic())
        stopping = asyncio.create_task(self._astop.wait())
        await asyncio.wait({worker, deferrer, stopping}, return_when=asyncio.FIRST_COMPLETED)
        deferrer.cancel()
        stopping.cancel()
        if not worker.done():
            worker.cancel()  # procrastinate stops gracefully: jobs in hand finish first
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        with contextlib.suppress(asyncio.CancelledError):
            await deferrer  # a deferrer that failed (the database went away) raises here

    # --- deferring ----------------------------------------------------------------------

    async def _defer_periodic(self) -> None:
        """Each period of each job is deferred once across the cluster: the database's
        periodic-defer record is unique on (task, job, period), so a replica that comes
        second for a period is told so and defers nothing."""
        last: dict[str, int] = {}
        while True:
            now = time.time()
            for schedule in self.schedules:
                period = _period_start(now, schedule.every)
                if last.get(schedule.job_id) == period:
                    continue
                last[schedule.job_id] = period
                await self._defer(schedule.job_id, period=period)
            await asyncio.sleep(_until_next_period(time.time(), self.schedules) + 0.05)

    async def _defer(
        self, job_id: str, *, period: int | None = None, at: datetime | None = None
    ) -> None:
        kwargs: dict[str, Any] = {"job": job_id}
        options: dict[str, Any] = {"queueing_lock": job_id, "task_kwargs": kwargs}
        if job_id not in ("process", SWEEP):
            # Processing is safe in parallel (row locks); the sweep must not hold a lock a
            # dead replica could take with it, since only the sweep releases such locks.
            options["lock"] = job_id
        if at is not None:
            options["schedule_at"] = at
        try:
            if period is None:
                await self.task.configure(**options).defer_async()
                return
            kwargs["timestamp"] = period
            deferrer = self.task.configure(**options)
            await deferrer.job_manager.defer_periodic_job(
                job=deferrer.job, periodic_id=job_id, defer_timestamp=period
            )
        except pexc.AlreadyEnqueued:
            pass  # one is waiting already, and it will see everything this one would have

    def wake(self, job_id: str) -> None:
        """Have a job run soon, on whichever replica is free (the webhook: process now)."""
        self._wake_at(job_id, None)

    def _wake_at(self, job_id: str, at: datetime | None) -> None:
        loop = self._loop
        if self.stop.is_set() or loop is None or not loop.is_running():
            return
        future = asyncio.run_coroutine_threadsafe(self._defer(job_id, at=at), loop)
        try:
            future.result(timeout=10)
        except Exception:  # the periodic run picks it up; a wake-up is only a shortcut
            log.warning("could not defer a wake-up", extra={"job": job_id}, exc_info=True)

    # --- the task -----------------------------------------------------------------------

    def _job(self, context: JobContext, job: str, timestamp: int | None = None) -> None:
        """What procrastinate runs: one leadbridge job, recorded as this replica's run."""
        if self.stop.is_set():
            return  # the work stays in the store; the next period's run picks it up
        trigger = "periodic" if timestamp is not None else "wake"
        if context.job.attempts:
            trigger = "retry"
        with self.replica.running(job, trigger, timestamp):
            if job == SWEEP:
                self._sweep()
            else:
                self.jobs.run(job)

    def _sweep(self) -> None:
        """Send the jobs of dead replicas back to the queue (their locks go with them).

        One sweeper at a time (an advisory lock held for the sweep): two sweepers could both
        list a job, and the second would re-queue it after a live replica took it again.
        """
        assert self._loop is not None
        with self.store.begin() as conn:
            if not conn.execute(text(SWEEP_LOCK)).scalar():
                return
            future = asyncio.run_coroutine_threadsafe(self._retry_stalled(), self._loop)
            retried = future.result(timeout=60)
        if retried:
            log.warning("jobs of a dead replica sent back to the queue", extra={"jobs": retried})

    async def _retry_stalled(self) -> list[str]:
        manager = self.app.job_manager
        stalled = await manager.get_stalled_jobs(
            queue=self.cluster.queue,
            seconds_since_heartbeat=self.cluster.stalled_after.total_seconds(),
        )
        retried = []
        for job in stalled:
            if job.task_name != TASK:
                continue
            try:
                await manager.retry_job(job)
            except pexc.UniqueViolation:
                # A job of the same id is already waiting (its queueing lock), and it will
                # do everything this one would have: end this one so its lock is released.
                await manager.finish_job(job, status=Status.ABORTED, delete_job=False)
            retried.append(str(job.task_kwargs.get("job")))
        await manager.prune_stalled_workers(self.cluster.stalled_after.total_seconds())
        if time.monotonic() - self._cleaned_at > CLEAN_EVERY_S:
            # Succeeded jobs are deleted as they finish; failed and ended ones are kept a
            # week for `procrastinate` tooling and post-mortems, then go.
            await manager.delete_old_jobs(
                nb_hours=KEEP_ENDED_JOBS_H,
                queue=self.cluster.queue,
                include_failed=True,
                include_cancelled=True,
                include_aborted=True,
            )
            self._cleaned_at = time.monotonic()
        return retried


def _step(every: timedelta) -> int:
    """A period in whole seconds (at least one): the periodic-defer record keys on them."""
    return max(1, round(every.total_seconds()))


def _period_start(now: float, every: timedelta) -> int:
    return int(now // _step(every) * _step(every))


def _until_next_period(now: float, schedules: list[Schedule]) -> float:
    return min(_period_start(now, s.every) + _step(s.every) - now for s in schedules)
