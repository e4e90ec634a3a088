"""Rescore benchmark: what the daily fit × engagement rescore costs (docs/scoring.md).

Ingests the same synthetic leads as bench/ingest.py (seed 7, 30 % returning) twice into
fresh SQLite stores — once scored as one number, once as fit × engagement — then runs the
rescore on the graded store: a quiet day (nothing changes: no row written, no push queued),
thirty days later (grades fall: every changed lead saved, its event recorded, one outbox
row per target), and the day after (quiet again). **Baseline**: ingesting the same leads,
i.e. recomputing every score by processing the landing again, which is what a system
without a rescore would have to do to let scores change with time. Ratios, not absolute
times, are what docs/benchmarks.md records.

    python bench/rescore.py --size 10000
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

GRID = {"mql_when": ["A1", "A2", "B1"], "recycle_after": "45d"}
TARGETS = [{"name": "hook", "kind": "webhook", "url": "https://example.com/l", "secret": "x" * 16}]


def ingest_into(workdir: Path, size: int, graded: bool) -> tuple[Any, Any, float]:
    from leadbridge.connectors.marketplace.file import LeadsFileConfig, LeadsFileSource
    from leadbridge.core.app.synthetic import write_jsonl
    from leadbridge.core.ingest.pipeline import ingest
    from leadbridge.core.settings import load_settings
    from leadbridge.core.store.repo import Store

    leads_file = workdir / "leads.jsonl"
    if not leads_file.exists():
        write_jsonl(leads_file, size)
    extra = {"qualification": GRID} if graded else {}
    db = workdir / f"{'graded' if graded else 'plain'}.db"
    settings = load_settings(None, store=f"sqlite:///{db}", targets=TARGETS, **extra)
    store = Store(settings.store)
    source = LeadsFileSource(LeadsFileConfig(name="bench", path=leads_file))
    start = time.perf_counter()
    ingest(source, store, settings)
    return store, settings, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=10_000)
    args = parser.parse_args()
    from leadbridge.core.store.repo import utcnow
    from leadbridge.core.sync.rescore import rescore

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        _, _, plain_s = ingest_into(workdir, args.size, graded=False)
        store, settings, graded_s = ingest_into(workdir, args.size, graded=True)
        now = utcnow()
        rows = [("ingest, one number (baseline)", plain_s, None)]
        rows.append(("ingest, fit × engagement", graded_s, None))
        for label, day in (
            ("rescore, a quiet day", 0),
            ("rescore, 30 days on", 30),
            ("rescore, the day after", 31),
        ):
            start = time.perf_counter()
            report = rescore(store, settings, now=now + timedelta(days=day))
            rows.append((label, time.perf_counter() - start, report))
        store.dispose()
    python, sqlite = platform.python_version(), sqlite3.sqlite_version
    print(f"machine: {platform.machine()}, Python {python}, SQLite {sqlite}")
    print(f"{args.size:,} raw leads\n")
    print("| run | leads scanned | regraded | queued | seconds | vs baseline |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, seconds, report in rows:
        scanned = f"{report.scanned:,}" if report else ""
        regraded = f"{report.regraded:,}" if report else ""
        queued = f"{report.queued:,}" if report else ""
        ratio = seconds / plain_s
        print(f"| {label} | {scanned} | {regraded} | {queued} | {seconds:.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
