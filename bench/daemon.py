"""Daemon benchmark: marketplace webhook POST → lead written in each CRM sandbox.

`leadbridge run` in its own process, the four CRM sandboxes in this one with 50 ms latency
per request; 20 concurrent clients POST 1,000 distinct leads to the webhook. Latency per
lead and CRM = the sandbox's first write of the record − the moment its POST was sent
(one clock: same machine). Baseline, side by side in the same run: the same 20 clients
making 1,000 single-record upserts straight to the Salesforce sandbox — the cost of one CRM
round trip with nothing in between. Then the daemon's idle CPU and RSS over 30 s.

    python bench/daemon.py [--leads 1000] [--clients 20] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
import yaml

from leadbridge.core.connector import sandboxes

TOKEN = "bench-webhook-token-0123456789"
KINDS = ["salesforce", "hubspot", "dataverse", "webhook"]
EMAIL_FIELD = {
    "salesforce": "Email",
    "hubspot": "email",
    "dataverse": "emailaddress1",
    "webhook": "email",
}


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]


def _post_all(url: str, bodies: list[dict[str, Any]], clients: int) -> list[float]:
    """POST every body with `clients` threads; returns each POST's start time, in order."""
    sessions = [requests.Session() for _ in range(clients)]
    sent = [0.0] * len(bodies)

    def post(i: int) -> None:
        sent[i] = time.time()
        response = sessions[i % clients].post(url, json=bodies[i], timeout=30)
        response.raise_for_status()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, range(len(bodies))))
    return sent


def _proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds used so far, RSS in MiB) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss_kb = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return cpu, rss_kb / 1024


def _baseline(sandbox: Any, count: int, clients: int) -> list[float]:
    token = requests.post(
        f"{sandbox.url}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
        },
        timeout=10,
    ).json()["access_token"]
    url = f"{sandbox.url}/services/data/v62.0/composite/sobjects/Lead/LeadBridge_Key__c"
    durations = [0.0] * count

    def upsert(i: int) -> None:
        body = {
            "allOrNone": False,
            "records": [
                {
                    "attributes": {"type": "Lead"},
                    "LeadBridge_Key__c": f"{i:032x}",
                    "LastName": "Direct",
                    "Company": "Contoso",
                }
            ],
        }
        start = time.perf_counter()
        requests.patch(
            url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ).raise_for_status()
        durations[i] = time.perf_counter() - start

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(upsert, range(count)))
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args()

    running = sandboxes.start(KINDS, latency_ms=args.latency_ms)
    baseline_box = sandboxes.start(["salesforce"], latency_ms=args.latency_ms)
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
                }
            ),
            encoding="utf-8",
        )
        daemon = subprocess.Popen(
            [sys.executable, "-m", "leadbridge.core", "--config", str(config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            while True:
                try:
                    if requests.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except requests.ConnectionError:
                    time.sleep(0.1)
            bodies = [_payload(i) for i in range(args.leads)]
            sent = _post_all(f"{base}/marketplace/leads/{TOKEN}", bodies, args.clients)
            sent_by_email = {
                b["UserDetails"]["Email"]: t for b, t in zip(bodies, sent, strict=True)
            }
            deadline = time.monotonic() + 600
            while any(len(s.records) < args.leads for s in running.values()):
                if time.monotonic() > deadline:
                    raise SystemExit("not every lead reached every CRM within 10 minutes")
                time.sleep(0.2)
            latency = {
                kind: [
                    r["_created_at"] - sent_by_email[r[EMAIL_FIELD[kind]]]
                    for r in box.records.values()
                ]
                for kind, box in running.items()
            }
            direct = _baseline(baseline_box["salesforce"], args.leads, args.clients)
            time.sleep(5)  # let the last jobs finish before measuring idle
            cpu0, rss0 = _proc_stats(daemon.pid)
            time.sleep(args.idle_seconds)
            cpu1, rss1 = _proc_stats(daemon.pid)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
            sandboxes.stop(running)
            sandboxes.stop(baseline_box)

    b50, b95 = _percentiles(direct)
    print(
        f"# {args.leads} leads by {args.clients} concurrent clients; {args.latency_ms:g} ms "
        f"per CRM request; {os.cpu_count()} cores"
    )
    print("| path | p50 s | p95 s | p95 vs one direct CRM call |")
    print("|---|---:|---:|---:|")
    print(f"| baseline: one direct Salesforce upsert per lead | {b50:.3f} | {b95:.3f} | 1.0x |")
    for kind in KINDS:
        p50, p95 = _percentiles(latency[kind])
        print(f"| webhook POST → written in {kind} | {p50:.3f} | {p95:.3f} | {p95 / b95:.1f}x |")
    print(
        f"\nidle: {100 * (cpu1 - cpu0) / args.idle_seconds:.2f} % of one core over "
        f"{args.idle_seconds:g} s; RSS {rss1:.0f} MiB (was {rss0:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
