"""Console benchmark: a console page over a store of ~100,000 leads, against a bare SELECT
of the same rows (issue 19: a page renders from indexed queries within 200 ms).

Ingests synthetic leads (bench/ingest.py's generator, seed 7, 30 % returning) into a fresh
SQLite store, signs in, then requests each page through the console's WSGI app (werkzeug's
client: routing, session check, queries, Jinja2, escaping) `--runs` times. **Baseline**: the
same rows read with one bare SELECT on the same store (what the page shows, nothing else).
Medians; the ratio is page / SELECT.

    python bench/console.py --size 143000   # ≈ 100,000 unique leads
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _median_ms(work: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=143_000, help="raw leads to ingest")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    from sqlalchemy import func, select
    from werkzeug.test import Client

    from leadbridge.connectors.marketplace.file import LeadsFileConfig, LeadsFileSource
    from leadbridge.core.app.console import auth
    from leadbridge.core.app.console.app import PAGE_ROWS, Console
    from leadbridge.core.app.http_app import App
    from leadbridge.core.app.synthetic import write_jsonl
    from leadbridge.core.ingest.pipeline import ingest
    from leadbridge.core.settings import load_settings
    from leadbridge.core.store.repo import Store
    from leadbridge.core.store.tables import leads

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        write_jsonl(workdir / "leads.jsonl", args.size)
        settings = load_settings(
            None, store=f"sqlite:///{workdir / 'lb.db'}", console={"enabled": True}
        )
        store = Store(settings.store)
        ingest(
            LeadsFileSource(LeadsFileConfig(name="bench", path=workdir / "leads.jsonl")),
            store,
            settings,
        )
        auth.add_user(store, "bench", auth.Role.viewer, "bench password")
        http = Client(App(store, [], [], console=Console(settings, store)))
        form = http.get("/console/login").get_data(as_text=True)  # the form's CSRF token
        token = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        signed = http.post(
            "/console/login",
            data={"username": "bench", "password": "bench password", "csrf": token},
        )
        assert signed.status_code == 303, signed.status_code
        with store.connect() as conn:
            total = conn.execute(select(func.count()).select_from(leads)).scalar_one()
            one = conn.execute(select(leads.c.lead_key, leads.c.email).limit(1)).one()
            stage = (
                conn.execute(
                    select(leads.c.stage).group_by(leads.c.stage).order_by(func.count().desc())
                )
                .scalars()
                .first()
            )

        def bare(*where: Any) -> Callable[[], Any]:
            stmt = select(leads.c.data).where(*where).order_by(leads.c.last_seen.desc())
            stmt = stmt.limit(PAGE_ROWS)

            def run() -> Any:
                with store.connect() as conn:
                    return conn.execute(stmt).all()

            return run

        def page(path: str) -> Callable[[], Any]:
            def run() -> Any:
                response = http.get(path)
                assert response.status_code == 200, (path, response.status_code)
                return response.data

            return run

        cases = [
            (
                f"leads by stage ({stage}, newest {PAGE_ROWS})",
                page(f"/console/leads?stage={stage}"),
                bare(leads.c.stage == stage),
            ),
            (
                "leads by email",
                page(f"/console/leads?email={one.email}"),
                bare(leads.c.email == one.email),
            ),
            (
                f"leads by company (part of a name, newest {PAGE_ROWS})",
                page("/console/leads?company=customer%2042%20"),
                bare(
                    func.lower(func.json_extract(leads.c.data, "$.company")).like("%customer 42 %")
                ),
            ),
            (
                "a lead's lineage",
                page(f"/console/leads/{one.lead_key}"),
                bare(leads.c.lead_key == one.lead_key),
            ),
        ]
        rows = [
            (label, _median_ms(p, args.runs), _median_ms(b, args.runs)) for label, p, b in cases
        ]
        overview = _median_ms(page("/console/"), args.runs)
        store.dispose()
    print(
        f"machine: {platform.machine()}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}; {total:,} leads; median of {args.runs}\n"
    )
    print("| page | page ms | bare SELECT ms | ratio |")
    print("|---|---:|---:|---:|")
    for label, page_ms, bare_ms in rows:
        print(f"| {label} | {page_ms:.2f} | {bare_ms:.2f} | {page_ms / bare_ms:.1f}x |")
    print(f"| overview (status counts, no SELECT baseline) | {overview:.1f} | | |")


if __name__ == "__main__":
    main()
