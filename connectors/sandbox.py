"""What every CRM sandbox shares: a loopback HTTP(S) server with routes, a record store,
latency, fault injection, and an admin API the tests, the demo and the benchmarks use.

A sandbox speaks the subset of its vendor's API that leadbridge uses, with the vendor's own
error shapes and throttling behaviour. It is a test and demo tool: it binds to loopback only.

Admin API (JSON), on every sandbox:
    GET  /_sandbox/records              every stored record
    GET  /_sandbox/requests             the request log (method, path, status, at, agent)
    POST /_sandbox/config               {"latency_ms": 50, "fail_rate": 0.3,
                                         "statuses": {"423": 0.1, "521": 0.05}, ...}
    POST /_sandbox/reset                forget records and the log

Faults on demand (`leadbridge sandbox --faults 423:0.1,521:0.05`, or `statuses` above): each
status answers that share of API requests, in the vendor's own body shape. Every sandbox can
answer its vendor's throttling status (`throttled()`) and the plain 500/502/503/504 any HTTP
API gives; a vendor's sandbox adds the statuses its API documents (`fault_statuses`,
`fault_answer`) — HubSpot's 423, 477 and Cloudflare's 52x, say.
"""

from __future__ import annotations

import json
import logging
import random
import re
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme

from leadbridge.core.connector.sandboxes import parse_faults

log = logging.getLogger("leadbridge.sandbox")

# The answers of a server in trouble that any HTTP API can give, in a plain body.
GENERIC_FAULTS = frozenset({500, 502, 503, 504})


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    match: re.Match[str] | None = None

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # send as-is (e.g. multipart), else body is JSON-encoded


@dataclass
class Faults:
    """Knobs for throttling storms and outages (reliability tests)."""

    latency_ms: float = 0.0
    fail_rate: float = 0.0  # share of API requests answered with the vendor's throttle / 503
    retry_after_s: float = 1.0
    token_ttl_requests: int = 0  # every N API requests the current token expires (401)
    down: bool = False  # every API request answered 503
    throttle_next: int = 0  # the next N API requests get the vendor's throttle answer
    drop_rate: float = 0.0  # share of API requests whose connection is cut, unanswered
    # status -> share of API requests answered with it, in the vendor's shape (`--faults`)
    statuses: dict[int, float] = field(default_factory=dict)
    seed: int = 1


Handler = Callable[[Request], Response]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A real API's listen backlog, not socketserver's 5: benchmarks open connections from
    # dozens of threads at once, and an overflowing backlog resets some of them.
    request_queue_size = 128


class Sandbox:
    """Base class: subclasses add routes in `routes()` and keep records in `self.records`."""

    kind = "sandbox"

    def __init__(
        self, port: int = 0, *, latency_ms: float = 0.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.request_log: list[dict[str, Any]] = []
        self.faults = Faults(latency_ms=latency_ms)
        self.lock = threading.RLock()
        self.random = random.Random(self.faults.seed)
        self.api_requests = 0
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.routes()
        self._server = _Server(("127.0.0.1", port), self._handler_class())
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if ssl_context is not None else "http"
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> Sandbox:
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name=f"sandbox-{self.kind}"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- for subclasses ----------------------------------------------------------------

    def routes(self) -> None:
        """Register the vendor routes with `self.route(method, pattern, handler)`."""

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(f"^{pattern}$"), handler))

    def throttled(self) -> Response:
        """The vendor's own throttling answer; overridden per vendor."""
        return Response(
            429, {"error": "throttled"}, {"Retry-After": f"{self.faults.retry_after_s:g}"}
        )

    def token_expired(self) -> Response:
        return Response(401, {"error": "token expired"})

    def fault_statuses(self) -> frozenset[int]:
        """The statuses `Faults.statuses` can make this sandbox answer: its vendor's
        throttling answer and the plain 5xx; a vendor's sandbox adds those its API documents."""
        return frozenset({self.throttled().status, *GENERIC_FAULTS})

    def fault_answer(self, status: int, request: Request) -> Response:
        """The answer for an injected status, as the vendor would give it."""
        throttled = self.throttled()
        if status == throttled.status:
            return throttled
        # RFC 9110 §15.6.4: a 503 may say when to come back.
        headers = {"Retry-After": f"{self.faults.retry_after_s:g}"} if status == 503 else {}
        return Response(status, {"error": HTTPStatus(status).phrase.lower()}, headers)

    def set_faults(self, statuses: Mapping[int, float]) -> None:
        """Answer these shares of API requests with these statuses (replacing any before)."""
        unsupported = sorted(set(statuses) - self.fault_statuses())
        if unsupported:
            raise ValueError(
                f"the {self.kind} sandbox cannot answer {', '.join(map(str, unsupported))}; "
                f"it answers {', '.join(map(str, sorted(self.fault_statuses())))}"
            )
        with self.lock:
            self.faults.statuses = dict(statuses)

    def is_api(self, request: Request) -> bool:
        """Requests subject to faults and counted as API calls (not auth, not admin)."""
        return True

    def drops(self, request: Request) -> bool:
        if not self.faults.drop_rate or request.path.startswith("/_sandbox/"):
            return False
        with self.lock:
            return self.is_api(request) and self.random.random() < self.faults.drop_rate

    def api_calls(self) -> int:
        with self.lock:
            return sum(1 for r in self.request_log if r["api"])

    # --- token handling shared by the vendors --------------------------------------------

    def issue_token(self) -> str:
        with self.lock:
            self.current_token = f"tok-{self.random.getrandbits(64):016x}"
            self.tokens_issued = getattr(self, "tokens_issued", 0) + 1
            return self.current_token

    def bearer_ok(self, request: Request) -> bool:
        expected = getattr(self, "current_token", None)
        return expected is not None and request.header("authorization") == f"Bearer {expected}"

    # --- dispatch ----------------------------------------------------------------------

    def _admin(self, request: Request) -> Response | None:
        if not request.path.startswith("/_sandbox/"):
            return None
        action = request.path.removeprefix("/_sandbox/")
        with self.lock:
            if action == "records" and request.method == "GET":
                return Response(200, list(self.records.values()))
            if action == "requests" and request.method == "GET":
                return Response(200, self.request_log)
            if action == "reset" and request.method == "POST":
                self.records.clear()
                self.request_log.clear()
                return Response(200, {"ok": True})
            if action == "config" and request.method == "POST":
                return self._configure(request.json() or {})
        return self.admin_extra(action, request) or Response(404, {"error": "no such admin call"})

    def _configure(self, values: dict[str, Any]) -> Response:
        try:
            if "statuses" in values:
                self.set_faults(parse_faults(values.pop("statuses") or {}))
            for key, value in values.items():
                if hasattr(self.faults, key):
                    setattr(self.faults, key, type(getattr(self.faults, key))(value))
        except (TypeError, ValueError) as exc:
            return Response(400, {"error": str(exc)})
        return Response(200, vars(self.faults))

    def admin_extra(self, action: str, request: Request) -> Response | None:
        return None

    def dispatch(self, request: Request) -> Response:
        admin = self._admin(request)
        if admin is not None:
            return admin
        api = self.is_api(request)
        if api:
            fault = self._fault(request)
            if fault is not None:
                return fault
        for method, pattern, handler in self._routes:
            if method == request.method and (match := pattern.match(request.path)):
                request.match = match
                return handler(request)
        return Response(404, {"error": f"no route {request.method} {request.path}"})

    def _fault(self, request: Request) -> Response | None:
        with self.lock:
            self.api_requests += 1
            faults = self.faults
            if faults.down:
                return Response(503, {"error": "service unavailable"})
            if faults.throttle_next > 0:
                faults.throttle_next -= 1
                return self.throttled()
            if faults.token_ttl_requests and self.api_requests % faults.token_ttl_requests == 0:
                self.current_token = None
                return self.token_expired()
            if faults.fail_rate and self.random.random() < faults.fail_rate:
                return self.throttled()
            if faults.statuses:
                roll = self.random.random()
                for status, share in faults.statuses.items():
                    if roll < share:
                        return self.fault_answer(status, request)
                    roll -= share
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sandbox = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the second waits for the
            # client's delayed ACK, adding ~40 ms to every answer — a delay no real CRM has,
            # which would sit in every benchmark figure.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # quiet: the request log has it
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                if sandbox.drops(request):
                    self.close_connection = True  # hang up without a word
                    return
                if sandbox.faults.latency_ms and not parts.path.startswith("/_sandbox/"):
                    time.sleep(sandbox.faults.latency_ms / 1000)
                try:
                    response = sandbox.dispatch(request)
                except Exception as exc:  # a sandbox bug must show, not hang the client
                    log.exception("sandbox error")
                    response = Response(500, {"error": f"sandbox error: {exc}"})
                if not parts.path.startswith("/_sandbox/"):
                    with sandbox.lock:
                        sandbox.request_log.append(
                            {
                                "method": self.command,
                                "path": parts.path,
                                "status": response.status,
                                "at": time.time(),
                                "api": sandbox.is_api(request),
                                "retry_after": response.headers.get("Retry-After"),
                                "agent": self.headers.get("User-Agent"),
                                # What was sent, so tests can check what a CRM received.
                                "body": request.body.decode("utf-8", "replace"),
                            }
                        )
                payload = (
                    response.raw
                    if response.raw is not None
                    else (b"" if response.body is None else json.dumps(response.body).encode())
                )
                self.send_response(response.status)
                headers = {"Content-Type": "application/json", **response.headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        return _Handler


class EntraSandbox(Sandbox):
    """A sandbox served over TLS from a throwaway CA (msal talks only to https authorities)
    that also plays the Entra ID authority for `tenant`: OIDC discovery; subclasses add the
    token endpoint they need. Point the client's `ca_bundle` at `ca_file`."""

    tenant = "00000000-0000-0000-0000-000000000000"

    def __init__(self, port: int = 0, *, latency_ms: float = 0.0) -> None:
        self.ca = trustme.CA()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self._tmp = tempfile.TemporaryDirectory(prefix=f"lb-{self.kind}-ca-")
        self.ca_file = Path(self._tmp.name) / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        super().__init__(port, latency_ms=latency_ms, ssl_context=context)

    @property
    def authority(self) -> str:
        return f"{self.url}/{self.tenant}"

    def routes(self) -> None:
        self.route(
            "GET", r"/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration", self.discovery
        )

    def discovery(self, request: Request) -> Response:
        base = f"{self.url}/{request.match['tenant']}"
        return Response(
            200,
            {
                "issuer": f"{base}/v2.0",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            },
        )

    def stop(self) -> None:
        super().stop()
        self._tmp.cleanup()


def form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body as a flat dict."""
    return {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
