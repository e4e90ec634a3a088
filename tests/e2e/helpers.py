"""Running leadbridge and its sandboxes as real processes, for the end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
import yaml

LEADBRIDGE = [sys.executable, "-m", "leadbridge.core"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def start_sandboxes(
    tmp: Path, latency_ms: float = 0
) -> tuple[subprocess.Popen[bytes], list[dict[str, Any]]]:
    """`leadbridge sandbox` in its own process; returns it and its targets block."""
    out = tmp / "targets.yaml"
    proc = subprocess.Popen(
        [*LEADBRIDGE, "sandbox", "--latency-ms", str(latency_ms), "--targets-out", str(out)],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not out.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("leadbridge sandbox did not start")
        time.sleep(0.1)
    return proc, yaml.safe_load(out.read_text(encoding="utf-8"))["targets"]


def sandbox_records(entry: dict[str, Any]) -> list[dict[str, Any]]:
    base = _base_url(entry)
    verify = entry.get("ca_bundle") or True
    return requests.get(f"{base}/_sandbox/records", timeout=10, verify=verify).json()


def _base_url(entry: dict[str, Any]) -> str:
    for key in ("instance_url", "base_url", "environment_url"):
        if key in entry:
            return entry[key].rstrip("/")
    return entry["url"].rsplit("/", 1)[0]


def write_config(
    tmp: Path,
    store: Path | str,
    sources: list[dict[str, Any]],
    targets: list[dict[str, Any]],
    **extra: Any,
) -> Path:
    """A config file; `store` is a SQLite file's path or a database URL."""
    url = store if isinstance(store, str) else f"sqlite:///{store}"
    path = tmp / "leadbridge.yaml"
    path.write_text(
        yaml.safe_dump({"store": url, "sources": sources, "targets": targets, **extra}),
        encoding="utf-8",
    )
    return path
