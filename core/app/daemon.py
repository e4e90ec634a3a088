"""`leadbridge run`: the scheduler and the HTTP server in one long-running process.

Shutdown (SIGTERM or SIGINT): stop taking work — the HTTP server closes first, so no lead
is accepted that can't be committed — then let the jobs finish the batch in hand, and exit
0 within 30 s. A batch still out at the deadline is left claimed; its claim expires
(`delivery.claim_ttl`) and the next start sends it again, as an upsert, so nothing is lost
and nothing duplicated.

Hostile clients: every connection has `http.request_timeout` to deliver each request whole
(headers and body) and `http.idle_timeout` of silence; the server's sweep cuts the rest, so
a slow-loris crowd that dribbles a header line every few seconds can hold a connection slot
for seconds, not for as long as it likes. With `http.health_port` set, /healthz, /readyz
and /metrics also get a listener of their own — its own socket, connection count and
worker threads — so probes are answered even while the public port is full or its workers
are all busy; the public port then needs to carry only the webhook (docs/deploy.md).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher
from waitress.wasyncore import loop

from leadbridge.core.app import gauges
from leadbridge.core.app.engines.apscheduler import SingleEngine
from leadbridge.core.app.engines.procrastinate import ClusterEngine
from leadbridge.core.app.http_app import MAX_BODY, App
from leadbridge.core.connector import PushReceiver
from leadbridge.core.settings import HttpSettings, Settings
from leadbridge.core.store.repo import Store
from leadbridge.core.support import metrics

if TYPE_CHECKING:  # typeshed's WSGI types exist only for the type checker
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger("leadbridge.daemon")
SHUTDOWN_BUDGET_S = 25.0  # of the 30 s an orchestrator gives between SIGTERM and SIGKILL
MAX_HEADER_BYTES = 64 * 1024  # Partner Center's headers are well under 2 KiB
HEALTH_THREADS = 2  # probes and a Prometheus scrape: a few requests a minute
HEALTH_CONNECTIONS = 64


def _console(settings: Settings, store: Store) -> WSGIApplication | None:
    """The operator console (issue 19), when `console: {enabled: true}`; imported only then."""
    if not settings.console.enabled:
        return None
    from leadbridge.core.app.console.app import Console

    # replays are queued; the daemon's own delivery job sends them, not a request thread
    return Console(settings, store, deliver_now=False)


def run(settings: Settings, store: Store) -> int:
    stop = threading.Event()
    engine_class = ClusterEngine if settings.engine == "cluster" else SingleEngine
    engine = engine_class(settings, store, stop)
    webhooks = [s for s in engine.sources if isinstance(s, PushReceiver)]
    app = App(
        store,
        webhooks,
        [t.name for t in settings.targets],
        on_landed=lambda: engine.wake("process"),
        job_streaks=engine.replica.streaks,
        unready_after=settings.http.unready_after_failures,
        console=_console(settings, store),  # issue 19
    )
    metrics.REGISTRY.register(gauges.StoreCollector(store, settings.cluster.stalled_after))
    listeners = listen(app, settings.http)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    engine.start()
    for listener in listeners:
        threading.Thread(target=listener.serve, name=listener.name, daemon=True).start()
    log.info(
        "leadbridge running",
        extra={
            "host": settings.http.host,
            "port": listeners[0].port,
            "health_port": listeners[1].port if len(listeners) > 1 else None,
            "sources": [s.name for s in engine.sources],
            "targets": [t.name for t in engine.targets],
        },
    )
    stop.wait()
    log.info("shutting down: no new work; finishing the batches in hand")
    for listener in listeners:
        listener.close()
    finished = engine.shutdown(SHUTDOWN_BUDGET_S)
    if not finished:
        log.warning(
            "jobs still running at the deadline; their claims will expire and the "
            "next start sends those leads again"
        )
    store.dispose()
    log.info("stopped")
    return 0


class DeadlineChannel(HTTPChannel):
    """A connection that remembers when the request in progress began to arrive."""

    request_started = 0.0

    def received(self, data: bytes) -> bool:
        if self.request is None and data:  # these bytes begin a new request
            self.request_started = time.monotonic()
        # waitress is untyped (mypy reads its source; untyped_calls_exclude misses super())
        arrived: bool = super().received(data)  # type: ignore[no-untyped-call]
        return arrived


class DeadlineServer(TcpWSGIServer):
    """waitress with a deadline per request, not only per silence.

    waitress cuts a connection after `channel_timeout` without a byte, so a client that
    sends one header line every few seconds keeps its slot forever; `connection_limit` of
    those and nobody else gets in (slow loris). The periodic sweep here also cuts every
    connection whose request in progress is older than `request_timeout`. A request that has
    arrived whole and is being answered is never cut.
    """

    channel_class = DeadlineChannel

    def __init__(self, application: WSGIApplication, *, request_timeout: float, **kw: Any) -> None:
        self.request_timeout = request_timeout
        super().__init__(application, **kw)  # type: ignore[no-untyped-call]  # waitress: untyped

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # type: ignore[no-untyped-call]  # the idle ones; untyped
        cutoff = time.monotonic() - self.request_timeout
        for channel in list(self.active_channels.values()):
            started = getattr(channel, "request_started", 0.0)
            if not channel.requests and channel.request is not None and started < cutoff:
                channel.will_close = True


class Listener:
    """One port: a DeadlineServer per address the host resolves to, one socket map (so one
    connection count), and its own worker threads."""

    def __init__(
        self,
        name: str,
        app: WSGIApplication,
        http: HttpSettings,
        port: int,
        threads: int,
        connection_limit: int,
    ) -> None:
        request_s = http.request_timeout.total_seconds()
        idle_s = http.idle_timeout.total_seconds()
        self.name = name
        self.adj = Adjustments(
            host=http.host,
            port=port,
            threads=threads,
            connection_limit=connection_limit,
            channel_timeout=idle_s,
            cleanup_interval=max(0.2, min(request_s, idle_s) / 4),  # cut within 25 % late
            max_request_header_size=MAX_HEADER_BYTES,
            max_request_body_size=MAX_BODY + 1,
            ident="leadbridge",
            asyncore_use_poll=True,
        )
        self.map: dict[int, Any] = {}
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(threads)
        self.servers = [
            DeadlineServer(
                app,
                request_timeout=request_s,
                map=self.map,
                dispatcher=dispatcher,
                adj=self.adj,
                sockinfo=sockinfo,
            )
            for sockinfo in self.adj.listen
        ]
        self.port = int(self.servers[0].effective_port)

    def serve(self) -> None:
        with contextlib.suppress(OSError):  # the listening socket closed under it at shutdown
            loop(timeout=self.adj.asyncore_loop_timeout, map=self.map, use_poll=True)

    def close(self) -> None:
        for server in self.servers:
            server.close()  # type: ignore[no-untyped-call]  # waitress is untyped


def listen(app: App, http: HttpSettings) -> list[Listener]:
    """The public listener (every endpoint) and, with `health_port`, the probes' own."""
    listeners = [Listener("http", app, http, http.port, http.threads, http.connection_limit)]
    if http.health_port is not None:
        listeners.append(
            Listener(
                "health", app.probes, http, http.health_port, HEALTH_THREADS, HEALTH_CONNECTIONS
            )
        )
    return listeners
