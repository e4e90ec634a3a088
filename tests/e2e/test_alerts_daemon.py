"""`leadbridge run` with an alert channel: a Contact-me lead posted to the marketplace
endpoint reaches the webhook CRM sandbox, and its hot-lead message reaches a local JSON
receiver through real apprise, counted in /metrics, with no personal data or secret in any
log line."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from tests.core.alerts.receiver import receiver

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

TOKEN = "e2e-alerts-token-0123456789"
RAW_EMAIL = re.compile(r"[\w.%+-]{2,}@[\w-]+\.[\w.]+")


@pytest.mark.slow
def test_a_contact_me_post_becomes_one_hot_lead_message(tmp_path: Path) -> None:
    sandbox, targets = start_sandboxes(tmp_path, crms="webhook")
    daemon = None
    try:
        with receiver() as rx:
            port = free_port()
            config = write_config(
                tmp_path,
                tmp_path / "lb.db",
                [{"name": "hook", "kind": "marketplace_https", "token": TOKEN}],
                targets,
                http={"host": "127.0.0.1", "port": port},
                alerts=[
                    {
                        "name": "sales",
                        "url": f"json://127.0.0.1:{rx.port}/sales/s3cr3t-key",
                        "events": ["hot_lead"],
                    }
                ],
            )
            log = tmp_path / "daemon.log"
            with log.open("wb") as out:
                daemon = subprocess.Popen(
                    [*LEADBRIDGE, "--config", str(config), "run"], env=env(), stderr=out
                )
                wait_until(lambda: healthy(port), 30, "the daemon to start")
                lead = {
                    "LeadSource": "AppSource (SPZA)-PLT|contoso.e2e",
                    "ActionCode": "PLT",
                    "UserDetails": {
                        "FirstName": "Alert",
                        "LastName": "Person",
                        "Company": "Fabrikam",
                        "Email": "alert.person@fabrikam.example.com",
                        "Country": "US",
                    },
                }
                url = f"http://127.0.0.1:{port}/marketplace/leads/{TOKEN}"
                assert requests.post(url, json=lead, timeout=10).status_code == 202
                wait_until(lambda: rx.to("/sales"), 20, "the hot-lead message")
                assert len(sandbox_records(targets[0])) == 1
                metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
                assert (
                    'leadbridge_alerts_total{channel="sales",event="hot_lead",outcome="sent"} 1.0'
                    in metrics
                )
                daemon.send_signal(signal.SIGTERM)
                assert daemon.wait(timeout=30) == 0
        [message] = rx.to("/sales")
        assert message.body["title"] == "Hot lead: Alert Person, Fabrikam — contoso.e2e"
        text = log.read_text("utf-8")
        assert "s3cr3t-key" not in text and not RAW_EMAIL.search(text)
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
        stop_sandboxes(sandbox)
