"""The container's health check: GET /healthz on the port the configuration gives.

`python -m leadbridge.core.app.healthcheck` (the Dockerfile's HEALTHCHECK) reads the same
config the daemon reads (`LEADBRIDGE_CONFIG` and env overrides), so the check follows
`http.port` — or `http.health_port`, the probes' own listener, when one is set — instead of
assuming 8080. Exit 0 healthy, 1 not. Standard library only past the settings, so it
starts fast and never logs personal data.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 4.0


def probe_url() -> str:
    from leadbridge.core.settings import load_settings

    http = load_settings(os.environ.get("LEADBRIDGE_CONFIG")).http
    return f"http://127.0.0.1:{http.health_port or http.port}/healthz"


def main() -> int:
    try:
        url = probe_url()
    except Exception as exc:  # a broken config is unhealthy, said in one line
        print(f"unhealthy: configuration unreadable ({type(exc).__name__})", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
