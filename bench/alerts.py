"""Alert benchmark: a *Contact me* POST to the daemon's marketplace endpoint → the hot-lead
message at a local JSON receiver.

`leadbridge run` in its own process; the four CRM sandboxes in this one with 50 ms latency
per request; one alert channel, `json://` to a receiver in this process (its `burst` raised
so that every lead is its own message, not a summary). `--clients` concurrent clients POST
`--leads` distinct Contact-me leads at `--rate` a second. Per lead, on one clock (same machine):
- alert latency = the receiver got the hot-lead message − the POST was sent;
- baseline, in the same run: CRM confirmation = the first CRM sandbox's write of that
  record − the POST was sent (the alert is queued when the first CRM confirms the lead).
The ratio alert p95 / CRM p95 is what the outbox and apprise add on top.

    python bench/alerts.py [--leads 200] [--rate 5] [--clients 4] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
import yaml

from leadbridge.core.connector import sandboxes

TOKEN = "bench-alerts-token-0123456789"
KINDS = ["salesforce", "hubspot", "dataverse", "webhook"]
EMAIL_FIELD = {
    "salesforce": "Email",
    "hubspot": "email",
    "dataverse": "emailaddress1",
    "webhook": "email",
}
TITLE = re.compile(r"^Hot lead: Bench L(\d+), Contoso")


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _payload(i: int) -> dict[str, Any]:
    return {
        "LeadSource": "AppSource (SPZA)-PLT|contoso.bench",
        "ActionCode": "PLT",
        "UserDetails": {
            "FirstName": "Bench",
            "LastName": f"L{i}",
            "Company": "Contoso",
            "Email": f"bench{i}@contoso.example.com",
            "Country": "US",
        },
    }


def _p95(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]


def _receiver() -> tuple[ThreadingHTTPServer, dict[int, float]]:
    """A JSON receiver: the arrival time of each lead's hot-lead message, by lead number."""
    arrived: dict[int, float] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            at = time.time()
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            match = TITLE.match(str(body.get("title", "")))
            if match:
                arrived.setdefault(int(match.group(1)), at)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, arrived


def _post_all(url: str, bodies: list[dict[str, Any]], clients: int, rate: float) -> list[float]:
    """POST every body, the i-th no earlier than i / rate seconds after the first."""
    sessions = [requests.Session() for _ in range(clients)]
    sent = [0.0] * len(bodies)
    start = time.time()

    def post(i: int) -> None:
        time.sleep(max(0.0, start + i / rate - time.time()))
        sent[i] = time.time()
        sessions[i % clients].post(url, json=bodies[i], timeout=30).raise_for_status()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, range(len(bodies))))
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--rate", type=float, default=5.0, help="Contact-me POSTs per second")
    args = parser.parse_args()

    running = sandboxes.start(KINDS, latency_ms=args.latency_ms)
    server, arrived = _receiver()
    port = _port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "leadbridge.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "store": f"sqlite:///{tmp}/bench.db",
                    "http": {"host": "127.0.0.1", "port": port},
                    "log_level": "WARNING",
                    "sources": [{"name": "hook", "kind": "marketplace_https", "token": TOKEN}],
                    "targets": [sandboxes.target_entry(k, s) for k, s in running.items()],
                    "alerts": {
                        "burst": 1000,  # one message per lead (up to 1000): the latency of each
                        "channels": [
                            {
                                "name": "bench",
                                "url": f"json://127.0.0.1:{server.server_address[1]}/hot",
                                "events": ["hot_lead"],
                            }
                        ],
                    },
                }
            ),
            encoding="utf-8",
        )
        daemon = subprocess.Popen(
            [sys.executable, "-m", "leadbridge.core", "--config", str(config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=open(os.environ.get("BENCH_DAEMON_LOG", os.devnull), "w"),  # noqa: SIM115
        )
        try:
            base = f"http://127.0.0.1:{port}"
            while daemon.poll() is None:
                try:
                    if requests.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except requests.ConnectionError:
                    time.sleep(0.1)
            else:
                raise SystemExit("the daemon exited; BENCH_DAEMON_LOG=path keeps its log")
            bodies = [_payload(i) for i in range(args.leads)]
            sent = _post_all(f"{base}/marketplace/leads/{TOKEN}", bodies, args.clients, args.rate)
            deadline = time.monotonic() + 300
            while len(arrived) < args.leads:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{len(arrived)}/{args.leads} hot-lead messages in 5 min")
                time.sleep(0.2)
            first_write: dict[str, float] = {}
            for kind, box in running.items():
                for record in list(box.records.values()):
                    email = record[EMAIL_FIELD[kind]]
                    first_write[email] = min(first_write.get(email, 1e18), record["_created_at"])
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
            sandboxes.stop(running)
            server.shutdown()

    alert = [arrived[i] - sent[i] for i in range(args.leads)]
    crm = [first_write[b["UserDetails"]["Email"]] - sent[i] for i, b in enumerate(bodies)]
    c50, c95 = _p95(crm)
    a50, a95 = _p95(alert)
    print(
        f"# {args.leads} Contact-me leads, {args.rate:g}/s by {args.clients} clients; "
        f"{args.latency_ms:g} ms per "
        f"CRM request; {os.cpu_count()} cores; Python {platform.python_version()}"
    )
    print("| path | p50 s | p95 s | p95 vs CRM confirmation |")
    print("|---|---:|---:|---:|")
    print(f"| baseline: POST → first CRM confirmed the lead | {c50:.3f} | {c95:.3f} | 1.0x |")
    print(
        f"| POST → hot-lead message at the JSON receiver | {a50:.3f} | {a95:.3f} "
        f"| {a95 / c95:.1f}x |"
    )


if __name__ == "__main__":
    main()
