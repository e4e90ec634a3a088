"""The daemon's HTTP endpoints, as a WSGI app (served by waitress, see core/daemon.py).

    GET  /healthz                      alive
    GET  /readyz                       store reachable and writable, migrations applied, no
                                       target fatal, no job failing run after run
    GET  /metrics                      Prometheus
    POST /marketplace/leads/<token>    the marketplace_https source: Partner Center posts here
    /console/…                         the operator console (issue 19, docs/console.md), only
                                       when `console: {enabled: true}`

`App.probes` serves the first three alone: the daemon's optional health listener, which a
flood on the public port cannot reach (core/daemon.py).

The webhook answers 2xx only after the raw lead is committed. Every body that passes the
token and size checks is landed, readable or not — nothing a customer sent is lost — and an
unreadable one is answered 400 with the reason (and quarantined with it).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Connection, insert, text
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from leadbridge.core.app import status as store_status
from leadbridge.core.app.engines.jobs import JobStreak
from leadbridge.core.connector import PushReceiver
from leadbridge.core.ingest.pipeline import land_one
from leadbridge.core.store import migrate
from leadbridge.core.store.db import SQLITE_BUSY_TIMEOUT_MS
from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.store.tables import cursors
from leadbridge.core.support import logs, metrics

if TYPE_CHECKING:  # typeshed's WSGI types exist only for the type checker
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("leadbridge.http")
MAX_BODY = 1024 * 1024  # 1 MiB: a marketplace lead is well under 2 KiB
PROBE_WAIT_MS = 3000  # the write probe waits this long for the store's write lock

_PROBES = [
    Rule("/healthz", endpoint="healthz", methods=["GET", "HEAD"]),
    Rule("/readyz", endpoint="readyz", methods=["GET", "HEAD"]),
    Rule("/metrics", endpoint="metrics", methods=["GET"]),
]
_PROBE_ROUTES = Map([rule.empty() for rule in _PROBES])
_ROUTES = Map([*_PROBES, Rule("/marketplace/leads/<token>", endpoint="lead", methods=["POST"])])


def _json(status: int, body: Any) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


class App:
    """The WSGI application; `on_landed` wakes processing and delivery for a new raw lead.

    `job_streaks` (the engine's replica) tells /readyz how each job has been doing: a job
    whose last `unready_after` runs all failed makes this replica unready.
    """

    def __init__(
        self,
        store: Store,
        webhooks: list[PushReceiver],
        target_names: list[str],
        on_landed: Callable[[], None] | None = None,
        *,
        job_streaks: Callable[[], Mapping[str, JobStreak]] | None = None,
        unready_after: int = 3,
        console: WSGIApplication | None = None,  # issue 19: mounted under /console/
    ) -> None:
        self.store = store
        self.console = console
        self.webhooks = webhooks
        self.target_names = target_names
        self.on_landed = on_landed or (lambda: None)
        self.job_streaks = job_streaks or dict
        self.unready_after = unready_after

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if self.console is not None and (path == "/console" or path.startswith("/console/")):
            return self.console(environ, start_response)  # issue 19: the operator console
        return self._dispatch(_ROUTES, environ, start_response)

    def probes(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Health, readiness and metrics only: the WSGI app of the health listener."""
        return self._dispatch(_PROBE_ROUTES, environ, start_response)

    def _dispatch(
        self, routes: Map, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = MAX_BODY
        try:
            endpoint, args = routes.bind_to_environ(environ).match()
            response: Response = getattr(self, endpoint)(request, **args)
        except NotFound:
            response = _json(404, {"error": "not found"})
        except HTTPException as exc:
            response = _json(exc.code or 500, {"error": exc.description})
        return response(environ, start_response)

    def healthz(self, request: Request) -> Response:
        return _json(200, {"status": "alive"})

    def readyz(self, request: Request) -> Response:
        """Ready = the store answers and takes writes, its schema is current, no target's
        credentials were refused, and no job has failed `unready_after` runs in a row.
        Each check says why it fails, by exception class or the driver's own words for the
        probe's fixed statement: nothing from a lead, nothing configured as a secret."""
        checks = self._store_checks() | self._job_checks()
        failing = sorted(k for k, v in checks.items() if v != "ok")
        return _json(
            503 if failing else 200, {"ready": not failing, "failing": failing, "checks": checks}
        )

    def _store_checks(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            with self.store.connect() as conn:
                conn.execute(text("SELECT 1"))
                checks["store"] = "ok"
                checks["migrations"] = (
                    "ok"
                    if migrate.is_current(self.store.engine)
                    else ("pending: run leadbridge db upgrade")
                )
                for name in self.target_names:
                    health = store_status.target_health(conn, name)
                    checks[f"target:{name}"] = (
                        f"fatal: {health.get('message')}"
                        if health.get("state") == "fatal"
                        else "ok"
                    )
        except Exception as exc:  # the store itself is down: that is the answer
            checks["store"] = f"unreachable: {type(exc).__name__}"
            return checks
        try:
            with self.store.connect() as conn:
                _probe_write(conn)
            checks["store:writable"] = "ok"
        except Exception as exc:
            checks["store:writable"] = f"not writable: {_reason(exc)}"
        return checks

    def _job_checks(self) -> dict[str, str]:
        checks = {}
        for job, streak in sorted(self.job_streaks().items()):
            checks[f"job:{job}"] = (
                f"failed {streak.failures} runs in a row (last error: {streak.error})"
                if streak.failures >= self.unready_after
                else "ok"
            )
        return checks

    def metrics(self, request: Request) -> Response:
        return Response(generate_latest(metrics.REGISTRY), mimetype=CONTENT_TYPE_LATEST)

    def lead(self, request: Request, token: str) -> Response:
        response = self._lead(request, token)
        metrics.WEBHOOK_REQUESTS.labels(str(response.status_code)).inc()
        return response

    def _lead(self, request: Request, token: str) -> Response:
        source = next((s for s in self.webhooks if s.token_matches(token)), None)
        if source is None:
            return _json(401, {"error": "unknown token"})
        try:
            body = request.get_data(cache=False)
        except RequestEntityTooLarge:
            return _json(413, {"error": f"body over {MAX_BODY} bytes"})
        raw = source.raw_lead(body, datetime.now(UTC))  # any body, however hostile
        land_one(self.store, raw)  # committed before any answer, and before parsing: rule 1
        self.on_landed()
        problem = source.problem(raw)
        if problem is not None:
            log.info(
                "webhook body kept but unreadable",
                extra={"source": source.name, "field": problem.field},
            )
            return _json(
                400,
                {"error": f"{problem.field}: {problem.reason}", "fix": problem.fix, "kept": True},
            )
        return _json(202, {"accepted": True})


def _probe_write(conn: Connection) -> None:
    """Write a row and roll it back: what a read-only store refuses (a read-only file or
    mount, a PostgreSQL replica after a failover, `default_transaction_read_only`), with a
    short wait for the write lock so a probe never hangs behind a long batch."""
    sqlite = conn.dialect.name == "sqlite"
    try:
        if sqlite:
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {PROBE_WAIT_MS}")
        else:
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {PROBE_WAIT_MS}")
        conn.execute(
            insert(cursors).values(
                name=f"readyz:probe:{uuid.uuid4().hex}", value="", updated_at=utcnow()
            )
        )
    finally:
        conn.rollback()
        if sqlite:  # the pooled connection goes back with the store's own wait
            try:
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            except Exception:
                conn.invalidate()
                raise


def _reason(exc: Exception) -> str:
    """The driver's error class and first line (`attempt to write a readonly database`),
    without SQLAlchemy's statement and parameters, redacted like a log line."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    first = (str(cause).strip().splitlines() or [""])[0][:200]
    return logs.redact(f"{type(cause).__name__}: {first}" if first else type(cause).__name__)
