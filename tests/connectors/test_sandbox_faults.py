"""Faults on demand in every sandbox: `--faults status:share,…`, the admin API's `statuses`,
and which statuses each sandbox can answer (its vendor's throttling answer, the plain 5xx, and
what its vendor documents besides)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
import yaml

from leadbridge.connectors.hubspot.sandbox import HubSpotSandbox
from leadbridge.connectors.salesforce.sandbox import SalesforceSandbox
from leadbridge.connectors.webhook.sandbox import WebhookSandbox
from leadbridge.core.connector.sandboxes import apply_faults, parse_faults
from tests.clihelp import EXIT_USAGE, run_cli


def test_a_fault_spec_is_status_share_pairs() -> None:
    assert parse_faults("423:0.1, 521:0.05") == {423: 0.1, 521: 0.05}
    assert parse_faults({"477": "0.5"}) == {477: 0.5}
    assert parse_faults("") == {}


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("423", "status:share"),
        ("423:often", "status:share"),
        ("200:0.1", "error statuses"),
        ("423:1.5", "between 0 and 1"),
        ("423:0.1,423:0.2", "twice"),
        ("423:0.6,521:0.6", "more than 1"),
    ],
)
def test_a_bad_fault_spec_says_what_is_wrong(spec: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_faults(spec)


def test_each_sandbox_answers_its_vendors_statuses() -> None:
    with SalesforceSandbox() as sf, WebhookSandbox() as hook, HubSpotSandbox() as hs:
        assert sf.fault_statuses() == {403, 500, 502, 503, 504}  # REQUEST_LIMIT_EXCEEDED
        assert hook.fault_statuses() == {500, 502, 503, 504}
        assert {423, 429, 477, 521, 522, 523, 524, 525, 526} <= hs.fault_statuses()
        with pytest.raises(ValueError, match="salesforce sandbox cannot answer 423"):
            sf.set_faults({423: 0.1})


def test_shares_are_kept_and_answers_come_in_the_vendors_shape() -> None:
    with SalesforceSandbox() as sf:
        sf.set_faults({403: 0.3, 503: 0.2})
        url = f"{sf.url}/services/data/v62.0/sobjects/Lead"
        statuses = Counter(requests.get(url, timeout=10).status_code for _ in range(200))
        assert 40 <= statuses[403] <= 80 and 20 <= statuses[503] <= 60
        limited = next(e for e in sf.request_log if e["status"] == 403)
        assert limited["api"] is True
        sf.set_faults({403: 1.0})
        body = requests.get(url, timeout=10).json()
        assert body[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"  # Salesforce's own shape


def test_the_admin_api_sets_and_refuses_statuses() -> None:
    with HubSpotSandbox() as hs:
        config = f"{hs.url}/_sandbox/config"
        answer = requests.post(config, json={"statuses": {"423": 0.25}}, timeout=10)
        assert answer.status_code == 200 and hs.faults.statuses == {423: 0.25}
        refused = requests.post(config, json={"statuses": "418:0.1"}, timeout=10)
        assert refused.status_code == 400 and "cannot answer 418" in refused.json()["error"]
        assert hs.faults.statuses == {423: 0.25}  # unchanged


def test_apply_faults_leaves_out_what_a_sandbox_cannot_answer() -> None:
    with SalesforceSandbox() as sf, HubSpotSandbox() as hs:
        running = {"salesforce": sf, "hubspot": hs}
        skipped = apply_faults(running, {423: 0.1, 503: 0.05})
        assert skipped == {"salesforce": [423]}
        assert sf.faults.statuses == {503: 0.05}
        assert hs.faults.statuses == {423: 0.1, 503: 0.05}
        with pytest.raises(ValueError, match="no running sandbox answers 418"):
            apply_faults(running, {418: 0.1})


def test_the_sandbox_command_refuses_a_bad_fault_spec() -> None:
    result = run_cli(["sandbox", "--crm", "hubspot", "--faults", "423:2"], expect=EXIT_USAGE)
    assert "between 0 and 1" in result.output
    nobody = run_cli(["sandbox", "--crm", "webhook", "--faults", "423:0.1"], expect=EXIT_USAGE)
    assert "no running sandbox answers 423" in nobody.output


def test_the_sandbox_command_injects_faults(tmp_path: Path) -> None:
    """`leadbridge sandbox --faults 423:1` in its own process: every API request is locked."""
    out = tmp_path / "targets.yaml"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "leadbridge.core",
            "sandbox",
            "--crm",
            "hubspot",
            "--faults",
            "423:1",
            "--targets-out",
            str(out),
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert out.exists(), "leadbridge sandbox did not start"
        [entry] = yaml.safe_load(out.read_text(encoding="utf-8"))["targets"]
        assert entry["kind"] == "hubspot"
        answer = requests.post(
            f"{entry['base_url']}/crm/v3/objects/contacts/search",
            json={},
            headers={"Authorization": f"Bearer {entry['token']}"},
            timeout=10,
        )
        assert answer.status_code == 423
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0
