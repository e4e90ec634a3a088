"""Report benchmark: `report funnel` for a month, a quarter and a year of a store that holds
two years of leads, against reading every lead's history (what the report did before).

A store is filled once (SQLite): `--size` synthetic raw leads (bench/ingest.py's generator,
seed 7, 30 % returning), each with a `CreatedTime` spread evenly over the two years before
`--end`, so every month holds about 1/24 of them. Then each period's report runs in a fresh
child process, `--runs` times, interleaved with the **baseline**: the same report with every
lead's history read, whatever the period (`funnel.active_lead_keys` replaced by every lead
key, as tests/core/reports/test_reports.py does to prove the figures equal). Medians of the
wall time and of the child's peak RSS; the ratio is the report over the baseline.

    python bench/report.py --size 200000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

PERIODS = ("month", "quarter", "year")
DAYS = 730


def write_leads(path: Path, size: int, end: date) -> None:
    """The synthetic payloads, the n-th created n/size of the way through the two years."""
    from leadbridge.core.app.synthetic import raw_payloads

    first = datetime(end.year, end.month, end.day, tzinfo=UTC) - timedelta(days=DAYS)
    step = timedelta(days=DAYS) / size
    with path.open("w", encoding="utf-8") as handle:
        for n, payload in enumerate(raw_payloads(size)):
            payload["CreatedTime"] = (first + n * step).isoformat()
            handle.write(json.dumps(payload) + "\n")


def fill(workdir: Path, size: int, end: date) -> str:
    from leadbridge.connectors.marketplace.file import LeadsFileConfig, LeadsFileSource
    from leadbridge.core.ingest.pipeline import ingest
    from leadbridge.core.settings import load_settings
    from leadbridge.core.store.repo import Store

    leads_file = workdir / "leads.jsonl"
    write_leads(leads_file, size, end)
    url = f"sqlite:///{workdir / 'report.db'}"
    settings = load_settings(None, store=url)
    store = Store(settings.store)
    source = LeadsFileSource(LeadsFileConfig(name="bench", path=leads_file))
    report = ingest(source, store, settings)
    assert report.processed == size, report
    store.dispose()
    return url


def child(url: str, kind: str, at: date, every: bool) -> dict[str, float]:
    """One report, in this (fresh) process; with `every`, over every lead's history."""
    from sqlalchemy import select

    from leadbridge.core.reports import funnel
    from leadbridge.core.store.repo import Store
    from leadbridge.core.store.tables import leads

    store = Store(url)
    period = funnel.period_for(kind, at)
    with store.connect() as conn:
        if every:
            everyone = set(conn.execute(select(leads.c.lead_key)).scalars())
            funnel.active_lead_keys = lambda _conn, _period: everyone
        read = len(funnel.active_lead_keys(conn, period))  # untimed: to print
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        report = funnel.funnel(conn, period, by="offer", now=datetime.now(UTC))
        wall = time.perf_counter() - start
    store.dispose()
    return {
        "wall_s": wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mb": rss_before / 1024,
        "leads_read": read,
        "mql": report["total"]["stages"]["mql"],
    }


def run_child(url: str, kind: str, at: date, every: bool) -> dict[str, float]:
    argv = [sys.executable, __file__, "--child", url, kind, at.isoformat()]
    done = subprocess.run([*argv, *(["--every"] if every else [])], check=True, capture_output=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=200_000, help="raw leads in the store")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--end", type=date.fromisoformat, default=date(2026, 12, 1))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--every", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, kind, at = args.child
        print(json.dumps(child(url, kind, date.fromisoformat(at), args.every)))
        return
    at = args.end - timedelta(days=45)  # a month, quarter and year well inside the store
    with tempfile.TemporaryDirectory() as tmp:
        url = fill(Path(tmp), args.size, args.end)
        print(
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}; {args.size:,} raw leads over {DAYS} days"
        )
        print(
            "| period | leads read: report / baseline | wall s: report / baseline (ratio) "
            "| peak RSS MB: report / baseline |"
        )
        print("|---|---:|---:|---:|")
        for kind in PERIODS:
            ours, every = [], []
            for _ in range(args.runs):  # interleaved: the machine's noise hits both alike
                ours.append(run_child(url, kind, at, every=False))
                every.append(run_child(url, kind, at, every=True))
            assert ours[0]["mql"] == every[0]["mql"], (ours[0], every[0])
            wall = [statistics.median(r["wall_s"] for r in runs) for runs in (ours, every)]
            rss = [statistics.median(r["peak_rss_mb"] for r in runs) for runs in (ours, every)]
            print(
                f"| {kind} | {ours[0]['leads_read']:,} / {every[0]['leads_read']:,} "
                f"| {wall[0]:.2f} / {wall[1]:.2f} ({wall[0] / wall[1]:.2f}) "
                f"| {rss[0]:.0f} / {rss[1]:.0f} |"
            )


if __name__ == "__main__":
    main()
