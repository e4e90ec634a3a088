"""Cluster benchmark: leads/s with 1, 2 and 4 replicas (`engine: cluster`) against 8 webhook
sandboxes at 100 ms per request, side by side in one run; 1 replica is the baseline.

Each run gets a fresh PostgreSQL database and fresh sandboxes. The replicas (`leadbridge
run`, real processes) start on an empty leads file and are all up before the clock starts;
then the file is swapped for one with `--raw` synthetic leads, and the clock stops when all
8 sandboxes hold every unique lead. Delivery dominates by design: `--batch 10` leads per
request (a receiver that takes small batches), so a target takes 100 ms per 10 leads, and
one `deliver` per target runs at a time across the cluster (`lock=`). What replicas add is
room for more targets at once: each runs `cluster.concurrency` jobs.

    python bench/cluster.py [--replicas 1 2 4] [--raw 1500] [--batch 10] [--concurrency 4]

PostgreSQL from LEADBRIDGE_BENCH_PG (default: postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import requests
import yaml

from leadbridge.connectors.webhook.sandbox import WebhookSandbox
from leadbridge.core.app.synthetic import write_jsonl
from leadbridge.core.connector import sandboxes

TARGETS = 8
PG = os.environ.get("LEADBRIDGE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def _config(tmp: Path, store: str, hooks: list[WebhookSandbox], args: Any) -> Path:
    targets = []
    for n, hook in enumerate(hooks):
        entry = sandboxes.target_entry("webhook", hook, name=f"hook{n}")
        entry.update(batch_size=args.batch, rate=1000.0, every="1s")
        targets.append(entry)
    config = {
        "store": store,
        "engine": "cluster",
        "log_level": "WARNING",
        "sources": [{"name": "f", "kind": "leads_file", "path": str(tmp / "leads.jsonl")}],
        "targets": targets,
        "cluster": {"concurrency": args.concurrency},
    }
    config["sources"][0]["every"] = "1s"
    path = tmp / "leadbridge.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run_once(replicas: int, args: Any, tmp: Path, prepared: Path, unique: int) -> dict[str, Any]:
    name = f"lb_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    store = PG.rsplit("/", 1)[0] + f"/{name}"
    hooks = [WebhookSandbox(latency_ms=args.latency_ms).start() for _ in range(TARGETS)]
    (tmp / "leads.jsonl").write_text("", encoding="utf-8")
    config = _config(tmp, store, hooks, args)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = [_free_port() for _ in range(replicas)]
        for port in ports:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "leadbridge.core", "--config", str(config), "run"],
                    env={**os.environ, "LEADBRIDGE_HTTP__PORT": str(port)},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + 60
        while not all(_healthy(p) for p in ports):
            if time.monotonic() > deadline:
                raise RuntimeError("replicas did not start")
            time.sleep(0.1)
        start = time.perf_counter()
        os.replace(prepared, tmp / "leads.jsonl")  # the leads appear all at once
        while min(len(h.records) for h in hooks) < unique:
            if time.perf_counter() - start > 600:
                raise RuntimeError("not delivered within 10 minutes")
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        calls = sum(h.api_calls() for h in hooks)
    finally:
        cpu = 0.0
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            _, _, usage = os.wait4(proc.pid, 0)
            cpu += usage.ru_utime + usage.ru_stime
        for hook in hooks:
            hook.stop()
        with psycopg.connect(PG, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {"replicas": replicas, "seconds": seconds, "calls": calls, "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--raw", type=int, default=1_500)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for replicas in args.replicas:
            prepared = tmp / "prepared.jsonl"
            unique = write_jsonl(prepared, args.raw)
            rows.append(run_once(replicas, args, tmp, prepared, unique))

    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.raw:,} raw leads, {unique:,} unique; {TARGETS} webhook targets at "
        f"{args.latency_ms:g} ms per request, {args.batch} leads per request; "
        f"cluster.concurrency {args.concurrency}"
    )
    print(
        "| replicas | seconds | leads/s (in all 8 targets) | deliveries/s | API calls | "
        "CPU-s (all replicas) | vs 1 replica |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    base = rows[0]["seconds"]
    for row in rows:
        rate = unique / row["seconds"]
        print(
            f"| {row['replicas']} | {row['seconds']:.1f} | {rate:,.0f} | "
            f"{rate * TARGETS:,.0f} | {row['calls']:,} | {row['cpu']:.1f} | "
            f"{base / row['seconds']:.2f}x |"
        )


if __name__ == "__main__":
    main()
