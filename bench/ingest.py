"""Ingest benchmark: parse + normalise + dedupe + commit, leads/s and peak RSS.

Runs each size in a fresh child process (so peak RSS is that run's own) and, side by side
in the same command, a baseline: the same leads inserted one transaction per lead with no
batching — the way a naive receiver (one webhook call → one commit) works. Ratios, not
absolute times, are what docs/benchmarks.md records.

    python bench/ingest.py --sizes 10000 100000

With `--floor`, each size instead runs twice more: leadbridge and a *floor* (issue 21) —
the unavoidable work only, on the same input file, in the same kind of child process and
through the same store engine (`make_engine`: WAL and its pragmas on SQLite): parse each
line's JSON, compute the uuid5 lead key, land the raw row, upsert the lead and append its
event, committed in batches. No normalisation, no merge, no scoring. leadbridge's rate is
printed as a fraction of the floor, for SQLite and, with `--stores sqlite postgresql`, for
PostgreSQL (a fresh database per run, created and dropped on `--pg-server`).

    python bench/ingest.py --floor --sizes 10000 100000 --stores sqlite postgresql
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def run_one(
    size: int, batch_size: int, workdir: Path, store_url: str | None = None
) -> dict[str, float]:
    """Ingest `size` synthetic leads into a fresh store (SQLite unless `store_url`); runs
    inside the child."""
    from leadbridge.connectors.marketplace.file import LeadsFileConfig, LeadsFileSource
    from leadbridge.core.ingest.pipeline import ingest
    from leadbridge.core.settings import load_settings
    from leadbridge.core.store.repo import Store

    leads_file, unique = input_file(workdir, size)
    url = store_url or f"sqlite:///{workdir / f'b{size}-{batch_size}.db'}"
    settings = load_settings(None, store=url, batch_size=batch_size)
    store = Store(settings.store)
    source = LeadsFileSource(LeadsFileConfig(name="bench", path=leads_file))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0, wall0 = time.process_time(), time.perf_counter()
    report = ingest(source, store, settings)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    assert report.processed == size
    store.dispose()
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
        # The parsing worker's (core/ingest/parse_ahead.py), joined by now; the input file
        # exists before this child starts, so no other child is counted.
        "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def input_file(workdir: Path, size: int) -> tuple[Path, int]:
    """The synthetic leads file of `size` lines in `workdir` and its unique (person, offer)
    count, written once per size by a process of its own: generating a million payloads
    keeps every person in memory (~200 MB), which must not count in a runner's peak RSS."""
    path = workdir / f"leads-{size}.jsonl"
    count = path.with_suffix(".unique")
    if not count.exists():
        subprocess.run([sys.executable, __file__, "--write", str(size), str(path)], check=True)
    return path, int(count.read_text())


def write_input(size: int, path: Path) -> None:
    from leadbridge.core.app.synthetic import write_jsonl

    path.with_suffix(".unique").write_text(str(write_jsonl(path, size)))


# The floor's own three tables: what any ingest must write, nothing more.
_FLOOR_SCHEMA = (
    "CREATE TABLE floor_raw (id {serial}, source_key CHAR(64) NOT NULL UNIQUE, "
    "payload TEXT NOT NULL)",
    "CREATE TABLE floor_leads (lead_key CHAR(32) PRIMARY KEY, email TEXT NOT NULL, "
    "offer TEXT NOT NULL, state TEXT NOT NULL, updated_at TEXT NOT NULL)",
    "CREATE TABLE floor_events (id {serial}, lead_key CHAR(32) NOT NULL, "
    "kind TEXT NOT NULL, at TEXT NOT NULL)",
    "CREATE INDEX floor_events_lead ON floor_events (lead_key)",
)


def run_floor(
    size: int, batch_size: int, workdir: Path, store_url: str | None = None
) -> dict[str, float]:
    """The unavoidable work on the same input leadbridge gets, through the same engine.

    Per line: orjson parse, uuid5 of email|offer, the raw row landed (unique on its
    content hash, as landing dedupes), the lead upserted, one event appended; a commit
    every `batch_size` lines. Plain tuples through the driver's executemany: no ORM, no
    statement building per batch.
    """
    import hashlib
    import uuid
    from datetime import UTC, datetime

    import orjson

    from leadbridge.core.domain.identity import LEADBRIDGE_NS
    from leadbridge.core.store.db import make_engine

    leads_file, unique = input_file(workdir, size)
    engine = make_engine(store_url or f"sqlite:///{workdir / f'floor{size}.db'}")
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    sqlite = engine.dialect.name == "sqlite"
    serial = (
        "INTEGER PRIMARY KEY" if sqlite else "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    )
    land = f"INSERT INTO floor_raw (source_key, payload) VALUES ({mark}, {mark})"
    upsert = (
        "INSERT INTO floor_leads (lead_key, email, offer, state, updated_at) "
        f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}) ON CONFLICT (lead_key) DO UPDATE "
        "SET state = excluded.state, updated_at = excluded.updated_at"
    )
    append = f"INSERT INTO floor_events (lead_key, kind, at) VALUES ({mark}, {mark}, {mark})"
    with engine.begin() as conn:
        for ddl in _FLOOR_SCHEMA:
            conn.exec_driver_sql(ddl.format(serial=serial))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0, wall0 = time.process_time(), time.perf_counter()
    processed = 0
    with leads_file.open("rb") as handle:
        while lines := [line for _, line in zip(range(batch_size), handle, strict=False)]:
            raw, leads, events = [], [], []
            now = datetime.now(UTC).isoformat()
            for line in lines:
                payload = orjson.loads(line)
                email = payload["UserDetails"]["Email"].strip().lower()  # the key's, no more
                offer = payload["LeadSource"]
                key = uuid.uuid5(LEADBRIDGE_NS, f"{email}|{offer}").hex
                raw.append((hashlib.sha256(line).hexdigest(), line.decode()))
                leads.append((key, email, offer, payload.get("ActionCode") or "", now))
                events.append((key, "action", now))
            with engine.begin() as conn:
                conn.exec_driver_sql(land, raw)
                conn.exec_driver_sql(upsert, leads)
                conn.exec_driver_sql(append, events)
            processed += len(lines)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    assert processed == size
    engine.dispose()
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


_RUNNERS = {"leadbridge": run_one, "floor": run_floor}


@contextlib.contextmanager
def fresh_store(kind: str, server: str) -> Iterator[str | None]:
    """None for SQLite (the child makes its file); on PostgreSQL a new database, dropped
    after the run, so every run starts from an empty store like the SQLite one does."""
    if kind == "sqlite":
        yield None
        return
    from sqlalchemy import create_engine, text

    name = f"lb_bench_{os.getpid()}_{time.monotonic_ns()}"
    admin = create_engine(
        server.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{server.rstrip('/')}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def floor_child(
    runner: str, size: int, batch_size: int, store_url: str | None, workdir: str
) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(size), str(batch_size), workdir]
    command += ["--runner", runner] + (["--store-url", store_url] if store_url else [])
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def floor_table(sizes: list[int], batch_size: int, stores: list[str], server: str) -> None:
    """leadbridge and the floor at each size and store, side by side, as a ratio."""
    print(
        "| store | raw leads | leadbridge leads/s | floor leads/s | leadbridge/floor "
        "| leadbridge peak RSS MB (its parsing worker) | floor peak RSS MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind in stores:
        for size in sizes:
            rows = {}
            with tempfile.TemporaryDirectory() as tmp:  # one input file for both runners
                for runner in ("floor", "leadbridge"):
                    with fresh_store(kind, server) as url:
                        rows[runner] = floor_child(runner, size, batch_size, url, tmp)
            ours, floor = rows["leadbridge"], rows["floor"]
            print(
                f"| {kind} | {size:,} | {ours['leads_per_s']:,.0f} | "
                f"{floor['leads_per_s']:,.0f} | "
                f"{ours['leads_per_s'] / floor['leads_per_s']:.2f} | "
                f"{ours['peak_rss_mb']:.0f} ({ours.get('worker_peak_rss_mb', 0):.0f}) | "
                f"{floor['peak_rss_mb']:.0f} |",
                flush=True,
            )


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
    parser.add_argument("--floor", action="store_true", help="leadbridge vs the floor")
    parser.add_argument("--stores", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite"])
    parser.add_argument("--pg-server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument(
        "--runner", choices=sorted(_RUNNERS), default="leadbridge", help=argparse.SUPPRESS
    )
    parser.add_argument("--store-url", help=argparse.SUPPRESS)
    parser.add_argument("--write", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        write_input(int(args.write[0]), Path(args.write[1]))
        return
    if args.child:
        run = _RUNNERS[args.runner]
        size, batch = int(args.child[0]), int(args.child[1])
        print(json.dumps(run(size, batch, Path(args.child[2]), args.store_url)))
        return
    print(
        f"# {platform.node()} {platform.processor() or platform.machine()} "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{', '.join(args.stores) if args.floor else 'SQLite'}"
    )
    if args.floor:
        floor_table(args.sizes, args.batch_size, args.stores, args.pg_server)
        return
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
