"""`leadbridge run` as a real process against the sandbox CRMs (another process) and Azurite:
webhook posts and new table rows reach every CRM, /metrics counts what was sent, /readyz
follows a target's credentials, SIGTERM mid-batch exits 0 and a restart loses and
duplicates nothing, and no log line carries a secret or a raw email."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from leadbridge.core.app.synthetic import write_jsonl

from .helpers import (
    LEADBRIDGE,
    env,
    free_port,
    healthy,
    sandbox_records,
    start_sandboxes,
    stop_sandboxes,
    wait_until,
    write_config,
)

TOKEN = "e2e-webhook-token-0123456789"
RAW_EMAIL = re.compile(r"[\w.%+-]{2,}@[\w-]+\.[\w.]+")
SECRETS = (
    "sandbox-secret",
    "sandbox-app-secret",
    "sandbox-private-app-token",
    "sandbox-webhook-secret",
    TOKEN,
)


def _payload(i: int, tag: str) -> dict[str, Any]:
    return {
        "LeadSource": "AppSource (SPZA)-PLT|contoso.e2e",
        "ActionCode": "PLT",
        "UserDetails": {
            "FirstName": "Hook",
            "LastName": f"L{i}",
            "Company": "Fabrikam",
            "Email": f"hook{i}.{tag}@fabrikam.example.com",
            "Country": "US",
        },
    }


def _row(i: int) -> dict[str, Any]:
    return {
        "PartitionKey": "2026-11-22",
        "RowKey": str(uuid.uuid4()),
        "ActionCode": "INS",
        "LeadSource": "AzureMarketplace-INS|contoso.e2e",
        "CustomerInfo": json.dumps(
            {
                "Email": f"table{i}@northwind.example.com",
                "LastName": f"T{i}",
                "Company": "Northwind",
            }
        ),
    }


def _metric(base: str, name: str, **labels: str) -> float:
    text = requests.get(f"{base}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _key_field(kind: str) -> str:
    return {
        "salesforce": "LeadBridge_Key__c",
        "hubspot": "email",
        "dataverse": "lb_leadkey",
        "webhook": "lead_key",
    }[kind]


@pytest.mark.slow
@pytest.mark.azurite
def test_the_daemon_end_to_end(tmp_path: Path, azurite: str) -> None:
    from azure.data.tables import TableServiceClient

    table_name = f"E2E{uuid.uuid4().hex[:8]}"
    table = TableServiceClient.from_connection_string(azurite).create_table(table_name)
    sandbox_proc, targets = start_sandboxes(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    for target in targets:
        target["every"] = "1s"
    config = write_config(
        tmp_path,
        tmp_path / "lb.db",
        [
            {"name": "hook", "kind": "marketplace_https", "token": TOKEN},
            {
                "name": "table",
                "kind": "marketplace_table",
                "connection_string": azurite,
                "table": table_name,
                "every": "1s",
            },
        ],
        targets,
        http={"host": "127.0.0.1", "port": port},
        delivery={"claim_ttl": "2s", "fatal_retry": "1s"},
    )
    logs: list[str] = []

    log_files: list[Path] = []

    def start() -> subprocess.Popen[bytes]:
        # Output to a file: a pipe nobody reads fills up and blocks the daemon's logging.
        log_files.append(tmp_path / f"daemon-{len(log_files)}.log")
        with log_files[-1].open("wb") as out:
            proc = subprocess.Popen(
                [*LEADBRIDGE, "--config", str(config), "run"],
                env=env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: healthy(port), 30, "the daemon to answer /healthz")
        return proc

    def stop(proc: subprocess.Popen[bytes]) -> int:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        logs.extend(log_files[-1].read_text(encoding="utf-8").splitlines())
        return proc.returncode

    def in_every_crm(count: int) -> bool:
        return all(len(sandbox_records(t)) >= count for t in targets)

    daemon = start()
    try:
        # 1. Webhook posts and new table rows arrive in every CRM.
        for i in range(20):
            assert (
                requests.post(
                    f"{base}/marketplace/leads/{TOKEN}", json=_payload(i, "a"), timeout=10
                ).status_code
                == 202
            )
        for i in range(15):
            table.create_entity(_row(i))
        wait_until(lambda: in_every_crm(35), 60, "35 leads in every CRM")

        # The webhook, through the real server, refuses what it must.
        hook = f"{base}/marketplace/leads/{TOKEN}"
        assert (
            requests.post(f"{base}/marketplace/leads/wrong", json={}, timeout=10).status_code == 401
        )
        assert requests.post(hook, data=b"x" * (1024 * 1024 + 10), timeout=10).status_code == 413
        bad = requests.post(hook, data=b"{not json", timeout=10)
        assert bad.status_code == 400 and "not JSON" in bad.json()["error"]

        # 2. /metrics counts exactly what was sent.
        assert _metric(base, "leadbridge_webhook_requests_total", status="202") == 20
        assert _metric(base, "leadbridge_webhook_requests_total", status="401") == 1
        assert _metric(base, "leadbridge_webhook_requests_total", status="400") == 1
        assert _metric(base, "leadbridge_raw_leads_total", source="hook") == 20
        assert _metric(base, "leadbridge_raw_leads_total", source="table") == 15
        for target in targets:
            assert (
                _metric(base, "leadbridge_pushes_total", target=target["name"], outcome="ok") == 35
            )
        assert _metric(base, "leadbridge_lead_confirmed_seconds_count", target="sales") == 35

        # 3. /readyz follows a target's credentials: rotated → unready; fixed → ready.
        sales = next(t for t in targets if t["kind"] == "salesforce")
        admin = f"{sales['instance_url']}/_sandbox/credentials"
        requests.post(admin, json={"client_secret": "rotated"}, timeout=5)
        requests.post(f"{base}/marketplace/leads/{TOKEN}", json=_payload(99, "b"), timeout=10)
        wait_until(
            lambda: requests.get(f"{base}/readyz", timeout=5).status_code == 503,
            30,
            "/readyz to turn unready",
        )
        assert requests.get(f"{base}/readyz", timeout=5).json()["failing"] == ["target:sales"]
        requests.post(admin, json={"client_secret": sales["client_secret"]}, timeout=5)
        wait_until(
            lambda: requests.get(f"{base}/readyz", timeout=5).status_code == 200,
            30,
            "/readyz to be ready again",
        )
        wait_until(lambda: in_every_crm(36), 30, "the held lead to reach Salesforce")

        # 4. SIGTERM in the middle of a batch: exit 0; a restart loses and duplicates nothing.
        for target in targets:
            verify = target.get("ca_bundle") or True
            url = (
                re.sub(r"/leads$", "", target.get("url", ""))
                or target.get("instance_url")
                or target.get("base_url")
                or target.get("environment_url")
            )
            requests.post(
                f"{url}/_sandbox/config", json={"latency_ms": 150}, timeout=5, verify=verify
            )
        for i in range(60):
            requests.post(f"{base}/marketplace/leads/{TOKEN}", json=_payload(i, "c"), timeout=10)
        time.sleep(0.5)
        started = time.monotonic()
        assert stop(daemon) == 0
        assert time.monotonic() - started < 30
        daemon = start()
        wait_until(lambda: in_every_crm(96), 90, "every lead after the restart")
        for target in targets:
            keys = [r[_key_field(target["kind"])] for r in sandbox_records(target)]
            assert len(keys) == len(set(keys)) == 96, target["kind"]
        assert stop(daemon) == 0  # the restarted daemon stops cleanly too
    finally:
        if daemon.poll() is None:  # the test failed: its exit code is beside the point
            stop(daemon)
        stop_sandboxes(sandbox_proc)

    # 5. No log line carries a secret or a raw email.
    assert logs, "the daemon logged nothing"
    for line in logs:
        assert not RAW_EMAIL.search(line), line
        assert not any(secret in line for secret in SECRETS), line


@pytest.mark.slow
def test_readiness_follows_a_failing_job_on_the_probes_own_port(tmp_path: Path) -> None:
    """The source's file is missing, so every ingest run fails: after three in a row the
    replica is unready and /readyz names the job; once the file is there it is ready again.
    The probes answer on `http.health_port`; the public port says the same."""
    leads = tmp_path / "leads.jsonl"
    port, health = free_port(), free_port()
    config = write_config(
        tmp_path,
        tmp_path / "lb.db",
        [{"name": "file", "kind": "leads_file", "path": str(leads), "every": "1s"}],
        [],
        http={"host": "127.0.0.1", "port": port, "health_port": health},
    )
    with (tmp_path / "daemon.log").open("wb") as out:
        proc = subprocess.Popen(
            [*LEADBRIDGE, "--config", str(config), "run"],
            env=env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    readyz = f"http://127.0.0.1:{health}/readyz"
    try:
        wait_until(lambda: healthy(health), 30, "the probes' port to answer /healthz")
        wait_until(
            lambda: requests.get(readyz, timeout=5).status_code == 503,
            60,
            "/readyz to turn unready",
        )
        unready = requests.get(readyz, timeout=5).json()
        assert unready["failing"] == ["job:ingest:file"]
        assert unready["checks"]["job:ingest:file"].endswith("(last error: FileNotFoundError)")
        assert unready["checks"]["store:writable"] == "ok"
        public = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert public.status_code == 503 and public.json()["failing"] == ["job:ingest:file"]
        write_jsonl(leads, 5)
        wait_until(
            lambda: requests.get(readyz, timeout=5).status_code == 200,
            60,
            "/readyz to be ready again",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
