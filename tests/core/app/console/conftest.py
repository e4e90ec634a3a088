"""A store with real history for the console: leads from the sample captures, delivered to
the in-process Salesforce sandbox whose validation rule refuses one (a dead letter), one
lead carrying hostile values, and two console users."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from werkzeug.test import Client

from leadbridge.core.app.console import auth
from leadbridge.core.app.console.app import Console
from leadbridge.core.app.http_app import App
from leadbridge.core.connector import sandboxes
from leadbridge.core.settings import Settings, load_settings
from leadbridge.core.store.repo import Store
from tests.clihelp import EXIT_ATTENTION, run_cli

PASSWORD = "correct horse battery staple"
# HTML, a script, a right-to-left override and a very long value, in one lead
HOSTILE_NAME = "<script>alert('x')</script><img src=x onerror=alert(1)>"
HOSTILE_COMPANY = "\u202eevil\u202c Corp " + "W" * 1000  # under MAX_FIELD_CHARS: kept
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class World:
    settings: Settings
    store: Store
    crm: Any
    config: Path
    console: Console

    def client(self) -> Client:
        app = App(self.store, [], [t.name for t in self.settings.targets], console=self.console)
        return Client(app)


@pytest.fixture
def world(tmp_path: Path, samples: list[dict[str, Any]]) -> Iterator[World]:
    running = sandboxes.start(["salesforce"])
    crm = running["salesforce"]
    payloads = [json.loads(json.dumps(s["https_payload"])) for s in samples]
    payloads[2]["UserDetails"]["Company"] = "SANDBOX_REJECT GmbH"  # the org's rule refuses it
    payloads[3]["UserDetails"]["FirstName"] = HOSTILE_NAME
    payloads[3]["UserDetails"]["Company"] = HOSTILE_COMPANY
    leads = tmp_path / "leads.jsonl"
    leads.write_text("\n".join(json.dumps(p) for p in payloads) + "\n", encoding="utf-8")
    config = tmp_path / "lb.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": f"sqlite:///{tmp_path / 'lb.db'}",
                "log_format": "text",
                "sources": [{"name": "capture", "kind": "leads_file", "path": str(leads)}],
                "targets": [sandboxes.target_entry("salesforce", crm)],
                "console": {"enabled": True, "secure_cookies": False},
            }
        ),
        encoding="utf-8",
    )
    run_cli(["--config", config, "ingest"])
    run_cli(["--config", config, "deliver"], expect=EXIT_ATTENTION)  # one dead letter
    settings = load_settings(config)
    store = Store(settings.store)
    auth.add_user(store, "olga", auth.Role.operator, PASSWORD)
    auth.add_user(store, "victor", auth.Role.viewer, PASSWORD)
    try:
        yield World(settings, store, crm, config, Console(settings, store))
    finally:
        store.dispose()
        sandboxes.stop(running)


def login_form(client: Client, user: str, password: str = PASSWORD) -> Any:
    """What a browser does: load the sign-in form (its CSRF token and cookie), post it."""
    token = csrf_of(client.get("/console/login").text)
    return client.post(
        "/console/login", data={"username": user, "password": password, "csrf": token}
    )


def sign_in(client: Client, user: str, password: str = PASSWORD) -> None:
    response = login_form(client, user, password)
    assert response.status_code == 303, response.text


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)
