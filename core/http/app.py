"""The daemon's HTTP endpoints, as a WSGI app (served by waitress, see core/daemon.py).

    GET  /healthz                      alive
    GET  /readyz                       store reachable, migrations applied, no target fatal
    GET  /metrics                      Prometheus
    POST /marketplace/leads/<token>    the marketplace_https source: Partner Center posts here

The webhook answers 2xx only after the raw lead is committed. Every body that passes the
token and size checks is landed, readable or not — nothing a customer sent is lost — and an
unreadable one is answered 400 with the reason (and quarantined with it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from leadbridge.connectors.marketplace.https import MarketplaceHttpsSource
from leadbridge.core import metrics, views
from leadbridge.core.pipeline import land_one
from leadbridge.core.store import migrate
from leadbridge.core.store.repo import Store

log = logging.getLogger("leadbridge.http")
MAX_BODY = 1024 * 1024  # 1 MiB: a marketplace lead is well under 2 KiB

_ROUTES = Map(
    [
        Rule("/healthz", endpoint="healthz", methods=["GET", "HEAD"]),
        Rule("/readyz", endpoint="readyz", methods=["GET", "HEAD"]),
        Rule("/metrics", endpoint="metrics", methods=["GET"]),
        Rule("/marketplace/leads/<token>", endpoint="lead", methods=["POST"]),
    ]
)


def _json(status: int, body: Any) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


class App:
    """The WSGI application; `on_landed` wakes processing and delivery for a new raw lead."""

    def __init__(
        self,
        store: Store,
        webhooks: list[MarketplaceHttpsSource],
        target_names: list[str],
        on_landed: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.webhooks = webhooks
        self.target_names = target_names
        self.on_landed = on_landed or (lambda: None)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = MAX_BODY
        try:
            endpoint, args = _ROUTES.bind_to_environ(environ).match()
            response = getattr(self, endpoint)(request, **args)
        except NotFound:
            response = _json(404, {"error": "not found"})
        except HTTPException as exc:
            response = _json(exc.code or 500, {"error": exc.description})
        return response(environ, start_response)

    def healthz(self, request: Request) -> Response:
        return _json(200, {"status": "alive"})

    def readyz(self, request: Request) -> Response:
        checks: dict[str, Any] = {}
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
                    health = views.target_health(conn, name)
                    checks[f"target:{name}"] = (
                        f"fatal: {health.get('message')}"
                        if health.get("state") == "fatal"
                        else "ok"
                    )
        except Exception as exc:  # the store itself is down: that is the answer
            checks["store"] = f"unreachable: {type(exc).__name__}"
        failing = sorted(k for k, v in checks.items() if v != "ok")
        return _json(
            503 if failing else 200, {"ready": not failing, "failing": failing, "checks": checks}
        )

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
        raw, problem = source.receive(body, datetime.now(UTC))
        land_one(self.store, raw)  # committed before any answer: rule 1
        self.on_landed()
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
