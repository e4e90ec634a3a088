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


# The CRMs the whole-process tests run against. Pinned, not "every installed sandbox": these
# tests are about crashes, storms and replicas, and their figures (calls, leads per CRM) are
# for these four; each connector's own behaviour is the shared target suite's business.
E2E_CRMS = "salesforce,hubspot,dataverse,webhook"


def start_sandboxes(
    tmp: Path, latency_ms: float = 0, crms: str = E2E_CRMS
) -> tuple[subprocess.Popen[bytes], list[dict[str, Any]]]:
    """`leadbridge sandbox` in its own process; returns it and its targets block."""
    out = tmp / "targets.yaml"
    proc = subprocess.Popen(
        [
            *LEADBRIDGE,
            "sandbox",
            "--crm",
            crms,
            "--latency-ms",
            str(latency_ms),
            "--targets-out",
            str(out),
        ],
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


def sandbox_requests(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The sandbox's request log: method, path, status, at (epoch seconds), api, agent."""
    base = _base_url(entry)
    verify = entry.get("ca_bundle") or True
    return requests.get(f"{base}/_sandbox/requests", timeout=10, verify=verify).json()


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


def wait_until(condition: Any, seconds: float, what: str, progress: Any = None) -> None:
    """Poll `condition` until true; on timeout fail with `progress()` (where things stand)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}: {progress() if progress else ''}")


def healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def start_replicas(
    config: Path, count: int, tmp: Path, extra_env: dict[int, dict[str, str]] | None = None
) -> tuple[list[subprocess.Popen[bytes]], list[int]]:
    """`count` × `leadbridge run` on one config (their own HTTP ports), each logging to a
    file in `tmp` (a pipe nobody reads would block them); returns once all are healthy."""
    procs, ports = [], [free_port() for _ in range(count)]
    for n, port in enumerate(ports):
        with (tmp / f"replica-{n}.log").open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [*LEADBRIDGE, "--config", str(config), "run"],
                    env=env() | {"LEADBRIDGE_HTTP__PORT": str(port)} | (extra_env or {}).get(n, {}),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        for port in ports:
            wait_until(lambda p=port: healthy(p), 60, "a replica to answer /healthz")
    except BaseException:
        for proc in procs:
            proc.kill()
        raise
    return procs, ports


def cluster_config(
    tmp: Path, pg_url: str, leads_file: Path, targets: list[dict[str, Any]], **extra: Any
) -> Path:
    """A cluster on `pg_url` polling one leads file, with the clocks of a test: beats every
    second, a silent replica dead after 4 s, swept every 2 s. `extra` overrides keys."""
    settings: dict[str, Any] = {
        "engine": "cluster",
        "http": {"host": "127.0.0.1", "port": 8080},
        "cluster": {"heartbeat": "1s", "stalled_after": "4s", "sweep_every": "2s"},
    }
    source = {"name": "file", "kind": "leads_file", "path": str(leads_file), "every": "1s"}
    return write_config(tmp, pg_url, [source], targets, **(settings | extra))


def stop_sandboxes(sandbox: subprocess.Popen[bytes]) -> None:
    """SIGTERM to `leadbridge sandbox`: it stops cleanly, exit 0 (docs/cli-json.md)."""
    sandbox.terminate()
    code = sandbox.wait(timeout=30)
    assert code == 0, f"leadbridge sandbox exited {code} on SIGTERM"


def stop_all(procs: list[subprocess.Popen[bytes]], sandbox: subprocess.Popen[bytes]) -> None:
    """A test's cleanup: kill what still runs of its replicas (the test has already checked
    the exit code of each it stopped), stop its sandboxes."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    stop_sandboxes(sandbox)
