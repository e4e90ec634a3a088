"""The daemon's HTTP listeners in-process: each request has a deadline (slow loris), a
keep-alive client that is merely slow between requests is not cut, and the probes'
listener serves health alone."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests

from leadbridge.core.app.daemon import Listener, listen
from leadbridge.core.app.http_app import App
from leadbridge.core.settings import HttpSettings
from leadbridge.core.store.repo import Store
from tests.conftest import free_port


@pytest.fixture
def listeners(store: Store) -> Iterator[list[Listener]]:
    settings = HttpSettings(
        host="127.0.0.1",
        port=free_port(),
        health_port=free_port(),
        request_timeout=timedelta(seconds=1),
        idle_timeout=timedelta(seconds=30),
    )
    running = listen(App(store, [], []), settings)
    for listener in running:
        threading.Thread(target=listener.serve, daemon=True).start()
    yield running
    for listener in running:
        listener.close()


def _closed_by_server(sock: socket.socket, seconds: float) -> bool:
    """Keep dribbling header lines; True once the server hangs up."""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            sock.sendall(b"X-Dribble: 1\r\n")
            if sock.recv(1024) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def test_a_request_that_never_finishes_arriving_is_cut(listeners: list[Listener]) -> None:
    with socket.create_connection(("127.0.0.1", listeners[0].port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert _closed_by_server(sock, 15)  # active all along, so never idle: the deadline


def test_a_keep_alive_client_slow_between_requests_is_not_cut(
    listeners: list[Listener],
) -> None:
    client = http.client.HTTPConnection("127.0.0.1", listeners[0].port, timeout=5)
    client.connect()
    first = client.sock
    try:
        for _ in range(3):  # 2.4 s on one connection, longer than the 1 s deadline
            client.request("GET", "/healthz")
            answer = client.getresponse()
            assert answer.status == 200 and answer.read() == b'{"status":"alive"}'
            assert client.sock is first  # the same connection throughout
            time.sleep(0.8)
    finally:
        client.close()


def test_the_health_listener_serves_the_probes_only(listeners: list[Listener]) -> None:
    probes = f"http://127.0.0.1:{listeners[1].port}"
    assert requests.get(f"{probes}/healthz", timeout=5).json() == {"status": "alive"}
    assert requests.get(f"{probes}/readyz", timeout=5).status_code == 200
    assert requests.post(f"{probes}/marketplace/leads/whatever", timeout=5).status_code == 404
