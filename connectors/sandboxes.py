"""Start every CRM sandbox at once and describe them as leadbridge targets.

Used by `leadbridge sandbox`, `leadbridge demo`, the end-to-end tests and the benchmarks.
"""

from __future__ import annotations

from typing import Any

from leadbridge.connectors.dataverse.sandbox import DataverseSandbox
from leadbridge.connectors.hubspot.sandbox import HubSpotSandbox
from leadbridge.connectors.salesforce.sandbox import SalesforceSandbox
from leadbridge.connectors.sandbox import Sandbox
from leadbridge.connectors.webhook.sandbox import WebhookSandbox

KINDS: dict[str, type[Sandbox]] = {
    "salesforce": SalesforceSandbox,
    "hubspot": HubSpotSandbox,
    "dataverse": DataverseSandbox,
    "webhook": WebhookSandbox,
}
TARGET_NAMES = {
    "salesforce": "sales",
    "hubspot": "marketing",
    "dataverse": "d365",
    "webhook": "hook",
}


def start(
    kinds: list[str] | None = None, *, latency_ms: float = 0.0, ports: dict[str, int] | None = None
) -> dict[str, Sandbox]:
    started: dict[str, Sandbox] = {}
    try:
        for kind in kinds or list(KINDS):
            sandbox = KINDS[kind](port=(ports or {}).get(kind, 0), latency_ms=latency_ms)
            started[kind] = sandbox.start()
    except BaseException:
        stop(started)
        raise
    return started


def stop(sandboxes: dict[str, Sandbox]) -> None:
    for sandbox in sandboxes.values():
        sandbox.stop()


def target_entry(kind: str, sandbox: Any, name: str | None = None) -> dict[str, Any]:
    """The `targets:` entry that points leadbridge at a running sandbox (its credentials)."""
    name = name or TARGET_NAMES[kind]
    if kind == "salesforce":
        return {
            "name": name,
            "kind": kind,
            "instance_url": sandbox.url,
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
        }
    if kind == "hubspot":
        return {"name": name, "kind": kind, "base_url": sandbox.url, "token": sandbox.token}
    if kind == "dataverse":
        return {
            "name": name,
            "kind": kind,
            "environment_url": sandbox.url,
            "authority": sandbox.authority,
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "ca_bundle": str(sandbox.ca_file),
        }
    if kind == "webhook":
        return {"name": name, "kind": kind, "url": f"{sandbox.url}/leads", "secret": sandbox.secret}
    raise KeyError(kind)
