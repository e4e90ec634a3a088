"""The console through the daemon's real listener (waitress), over HTTP on loopback."""

from __future__ import annotations

import threading
from datetime import timedelta

import requests

from leadbridge.core.app.daemon import _console, listen
from leadbridge.core.app.http_app import App
from leadbridge.core.settings import HttpSettings
from tests.conftest import free_port

from .conftest import PASSWORD, World, csrf_of


def test_sign_in_and_overview_through_waitress(world: World) -> None:
    console = _console(world.settings, world.store)
    assert console is not None
    settings = HttpSettings(
        host="127.0.0.1", port=free_port(), request_timeout=timedelta(seconds=5)
    )
    [listener] = listen(App(world.store, [], ["sales"], console=console), settings)
    threading.Thread(target=listener.serve, daemon=True).start()
    base = f"http://127.0.0.1:{listener.port}"
    try:
        with requests.Session() as browser:
            form = browser.get(f"{base}/console/login", timeout=10)
            signed = browser.post(
                f"{base}/console/login",
                data={"username": "olga", "password": PASSWORD, "csrf": csrf_of(form.text)},
                timeout=10,
            )
            assert signed.status_code == 200 and signed.url == f"{base}/console/"
            assert 'data-target="sales" data-state="red"' in signed.text
            assert browser.get(f"{base}/metrics", timeout=10).status_code == 200
        assert (
            requests.get(f"{base}/console/", timeout=10, allow_redirects=False).status_code == 303
        )
    finally:
        listener.close()
