"""Ingest benchmark: parse + normalise + dedupe + commit, leads/s and peak RSS.

Runs each size in a fresh child process (so peak RSS is that run's own) and, side by side
in the same command, a baseline: the same leads inserted one transaction per lead with no
batching — the way a naive receiver (one webhook call → one commit) works. Ratios, not
absolute times, are what docs/benchmarks.md records.

    python bench/ingest.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_one(size: int, batch_size: int, workdir: Path) -> dict[str, float]:
    """Ingest `size` synthetic leads into a fresh SQLite store; runs inside the child."""
    from leadbridge.connectors.marketplace.file import LeadsFileConfig, LeadsFileSource
    from leadbridge.core.app.synthetic import write_jsonl
    from leadbridge.core.ingest.pipeline import ingest
    from leadbridge.core.settings import load_settings
    from leadbridge.core.store.repo import Store

    leads_file = workdir / f"leads-{size}.jsonl"
    unique = write_jsonl(leads_file, size)
    settings = load_settings(
        None, store=f"sqlite:///{workdir / f'b{size}-{batch_size}.db'}", batch_size=batch_size
    )
    store = Store(settings.store)
    source = LeadsFileSource(LeadsFileConfig(name="bench", path=leads_file))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0, wall0 = time.process_time(), time.perf_counter()
    report = ingest(source, store, settings)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    assert report.processed == size
    return {
        "size": size,
        "batch_size": batch_size,
        "unique_leads": unique,
        "wall_s": wall,
        "cpu_s": cpu,
        "leads_per_s": size / wall,
        "leads_per_cpu_s": size / cpu,
        "rss_before_mb": rss_before / 1024,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child(size: int, batch_size: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(size), str(batch_size), tmp],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--baseline-size", type=int, default=10_000)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = run_one(int(args.child[0]), int(args.child[1]), Path(args.child[2]))
        print(json.dumps(result))
        return
    print(
        f"# {platform.node()} {platform.processor() or platform.machine()} "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, SQLite"
    )
    baseline = child(args.baseline_size, 1)
    rows = [baseline] + [child(size, args.batch_size) for size in args.sizes]
    print(
        "| raw leads | batch | unique leads | leads/s (wall) | leads/CPU-s | peak RSS MB "
        "| vs baseline |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        ratio = row["leads_per_s"] / baseline["leads_per_s"]
        print(
            f"| {row['size']:,} | {row['batch_size']} | {row['unique_leads']:,} | "
            f"{row['leads_per_s']:,.0f} | {row['leads_per_cpu_s']:,.0f} | "
            f"{row['peak_rss_mb']:.0f} | {ratio:.1f}x |"
        )


if __name__ == "__main__":
    main()
