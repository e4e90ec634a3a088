"""The marketplace webhook under 1,000 hostile connections — wrong tokens, oversize bodies,
slow senders trickling bytes — keeps answering good posts and lands every one of them; and
under a slow-loris crowd that fills every connection slot, the probes and a good post are
still answered, because each dribbling connection is cut at its request deadline."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from ..e2e.helpers import LEADBRIDGE, env, free_port, wait_until, write_config

TOKEN = "flood-test-token-0123456789"
SLOW, WRONG, OVERSIZE, GOOD = 150, 550, 100, 200  # 1,000 in all
GOOD_BODY = {
    "LeadSource": "AppSource (SPZA)-PLT|contoso.flood",
    "UserDetails": {"Email": "good@contoso.example.com", "LastName": "G"},
}


def _slow_sender(port: int, stop: threading.Event) -> None:
    """Promise a body, then send it a byte at a time, slowly."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(
            f"POST /marketplace/leads/{TOKEN} HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n".encode()
        )
        while not stop.is_set():
            try:
                sock.sendall(b" ")
            except OSError:
                return  # the server cut us off (channel timeout): as it should
            stop.wait(0.5)


class Dribblers:
    """Slow loris: connections that each send a request line, then one more header line
    every `every` seconds — never idle long enough for an idle timeout, never finishing.
    One thread drives them all and notes each one the server hangs up on."""

    def __init__(self, port: int, count: int, every: float = 0.5) -> None:
        self.socks = [
            socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)
        ]
        self.cut: set[int] = set()
        self.every = every
        self._stop = threading.Event()
        for sock in self.socks:
            sock.sendall(f"POST /marketplace/leads/{TOKEN} HTTP/1.1\r\n".encode())
            sock.setblocking(False)
        self._thread = threading.Thread(target=self._dribble, daemon=True)
        self._thread.start()

    def _dribble(self) -> None:
        while not self._stop.wait(self.every):
            for n, sock in enumerate(self.socks):
                if n not in self.cut and not self._send(sock):
                    self.cut.add(n)

    @staticmethod
    def _send(sock: socket.socket) -> bool:
        """One more header line; False once the server has closed the connection."""
        try:
            if sock.recv(1024) == b"":
                return False
        except BlockingIOError:
            pass
        except OSError:
            return False
        try:
            sock.send(b"X-Dribble: 1\r\n")
        except BlockingIOError:
            pass  # our send buffer is full: the server stopped reading, not closed yet
        except OSError:
            return False
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for sock in self.socks:
            sock.close()


@contextmanager
def daemon(tmp_path: Path, **http: Any) -> Iterator[str]:
    """`leadbridge run` with one webhook source on a SQLite store, until it answers; yields
    its base URL, and stops it with ^C, which must exit 0."""
    port = free_port()
    config = write_config(
        tmp_path,
        tmp_path / "lb.db",
        [{"name": "hook", "kind": "marketplace_https", "token": TOKEN}],
        [],
        http={"host": "127.0.0.1", "port": port, **http},
        log_level="WARNING",
    )
    with (tmp_path / "daemon.log").open("wb") as out:
        proc = subprocess.Popen(
            [*LEADBRIDGE, "--config", str(config), "run"],
            env=env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{base}/healthz"), 30, "the daemon to answer /healthz")
        yield base
    finally:
        proc.send_signal(signal.SIGINT)  # ^C stops it like SIGTERM: cleanly, exit 0
        assert proc.wait(timeout=40) == 0


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


def _landed(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM raw_leads").fetchone()[0]


@pytest.mark.slow
def test_the_webhook_stays_up_under_a_flood(tmp_path: Path) -> None:
    with daemon(tmp_path) as base:
        port = int(base.rsplit(":", 1)[1])
        stop = threading.Event()
        slow = [
            threading.Thread(target=_slow_sender, args=(port, stop), daemon=True)
            for _ in range(SLOW)
        ]
        for thread in slow:
            thread.start()
        big = b"{" + b" " * (1024 * 1024 + 100) + b"}"

        def hostile(i: int) -> int:
            try:
                if i < WRONG:
                    return requests.post(
                        f"{base}/marketplace/leads/wrong-{i}", json={}, timeout=30
                    ).status_code
                return requests.post(
                    f"{base}/marketplace/leads/{TOKEN}", data=big, timeout=30
                ).status_code
            except requests.ConnectionError:
                return 0  # cut off mid-upload of an oversize body: also a refusal

        def good(i: int) -> tuple[int, float]:
            started = time.monotonic()
            body = {
                "LeadSource": "AppSource (SPZA)-PLT|contoso.flood",
                "UserDetails": {"Email": f"good{i}@contoso.example.com", "LastName": "G"},
            }
            status = requests.post(
                f"{base}/marketplace/leads/{TOKEN}", json=body, timeout=30
            ).status_code
            return status, time.monotonic() - started

        with ThreadPoolExecutor(60) as pool:
            hostile_results = pool.map(hostile, range(WRONG + OVERSIZE))
            good_results = list(pool.map(good, range(GOOD)))
            hostile_statuses = list(hostile_results)
        assert requests.get(f"{base}/healthz", timeout=5).ok
        stop.set()
        assert [s for s, _ in good_results] == [202] * GOOD
        assert max(seconds for _, seconds in good_results) < 15
        assert hostile_statuses[:WRONG] == [401] * WRONG
        assert set(hostile_statuses[WRONG:]) <= {413, 0}
        assert _landed(tmp_path / "lb.db") == GOOD


@pytest.mark.slow
def test_a_slow_loris_crowd_cannot_hold_the_server(tmp_path: Path) -> None:
    """Six times as many dribbling connections as there are slots. waitress alone would
    keep every one of them (each is active, so never idle) and answer nobody else; with the
    request deadline each is cut after 2 s, the probes' own listener answers throughout,
    and a good post and a health check on the public port get their turn."""
    health = free_port()
    limits = {"connection_limit": 50, "request_timeout": "2s", "idle_timeout": "5s"}
    with daemon(tmp_path, health_port=health, **limits) as base:
        port = int(base.rsplit(":", 1)[1])
        crowd = Dribblers(port, 300)
        try:
            wait_until(lambda: len(crowd.cut) >= 10, 30, "the first dribblers to be cut")
            probes = f"http://127.0.0.1:{health}"
            assert requests.get(f"{probes}/healthz", timeout=5).json() == {"status": "alive"}
            ready = requests.get(f"{probes}/readyz", timeout=10)
            assert ready.status_code == 200 and ready.json()["ready"] is True
            post = requests.post(f"{base}/marketplace/leads/{TOKEN}", json=GOOD_BODY, timeout=90)
            assert post.status_code == 202
            assert requests.get(f"{base}/healthz", timeout=90).ok
            wait_until(lambda: len(crowd.cut) == 300, 90, "every dribbler to be cut")
        finally:
            crowd.close()
        assert _landed(tmp_path / "lb.db") == 1
