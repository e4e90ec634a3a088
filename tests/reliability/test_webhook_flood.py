"""The marketplace webhook under 1,000 hostile connections — wrong tokens, oversize bodies,
slow senders trickling bytes — keeps answering good posts and lands every one of them."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from ..e2e.helpers import LEADBRIDGE, env, free_port, write_config

TOKEN = "flood-test-token-0123456789"
SLOW, WRONG, OVERSIZE, GOOD = 150, 550, 100, 200  # 1,000 in all


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


@pytest.mark.slow
def test_the_webhook_stays_up_under_a_flood(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "lb.db"
    config = write_config(
        tmp_path,
        db,
        [{"name": "hook", "kind": "marketplace_https", "token": TOKEN}],
        [],
        http={"host": "127.0.0.1", "port": port},
        log_level="WARNING",
    )
    with (tmp_path / "daemon.log").open("wb") as out:
        daemon = subprocess.Popen(
            [*LEADBRIDGE, "--config", str(config), "run"],
            env=env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
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
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM raw_leads").fetchone()[0] == GOOD
    finally:
        daemon.send_signal(signal.SIGINT)  # ^C stops it like SIGTERM: cleanly, exit 0
        assert daemon.wait(timeout=40) == 0
