"""`leadbridge run`: the scheduler and the HTTP server in one long-running process.

Shutdown (SIGTERM or SIGINT): stop taking work — the HTTP server closes first, so no lead
is accepted that can't be committed — then let the jobs finish the batch in hand, and exit
0 within 30 s. A batch still out at the deadline is left claimed; its claim expires
(`delivery.claim_ttl`) and the next start sends it again, as an upsert, so nothing is lost
and nothing duplicated.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Any

from waitress import create_server

from leadbridge.connectors.marketplace.https import MarketplaceHttpsSource
from leadbridge.core import metrics
from leadbridge.core.engines.apscheduler import SingleEngine
from leadbridge.core.engines.procrastinate import ClusterEngine
from leadbridge.core.http.app import MAX_BODY, App
from leadbridge.core.settings import Settings
from leadbridge.core.store.repo import Store

log = logging.getLogger("leadbridge.daemon")
SHUTDOWN_BUDGET_S = 25.0  # of the 30 s an orchestrator gives between SIGTERM and SIGKILL


def run(settings: Settings, store: Store) -> int:
    stop = threading.Event()
    engine_class = ClusterEngine if settings.engine == "cluster" else SingleEngine
    engine = engine_class(settings, store, stop)
    webhooks = [s for s in engine.sources if isinstance(s, MarketplaceHttpsSource)]
    app = App(
        store,
        webhooks,
        [t.name for t in settings.targets],
        on_landed=lambda: engine.wake("process"),
    )
    metrics.REGISTRY.register(metrics.StoreCollector(store, settings.cluster.stalled_after))
    server = _server(app, settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    engine.start()
    http = threading.Thread(target=_serve, args=(server,), name="http", daemon=True)
    http.start()
    log.info(
        "leadbridge running",
        extra={
            "host": settings.http.host,
            "port": server.effective_port,
            "sources": [s.name for s in engine.sources],
            "targets": [t.name for t in engine.targets],
        },
    )
    stop.wait()
    log.info("shutting down: no new work; finishing the batches in hand")
    server.close()
    finished = engine.shutdown(SHUTDOWN_BUDGET_S)
    if not finished:
        log.warning(
            "jobs still running at the deadline; their claims will expire and the "
            "next start sends those leads again"
        )
    store.dispose()
    log.info("stopped")
    return 0


def _server(app: App, settings: Settings) -> Any:
    """waitress with timeouts: slow or idle senders are cut off, bodies capped."""
    return create_server(
        app,
        host=settings.http.host,
        port=settings.http.port,
        threads=8,
        channel_timeout=30,
        cleanup_interval=10,
        connection_limit=1000,
        max_request_body_size=MAX_BODY + 1,
        ident="leadbridge",
        asyncore_use_poll=True,
    )


def _serve(server: Any) -> None:
    with contextlib.suppress(OSError):  # the listening socket closed under it at shutdown
        server.run()
