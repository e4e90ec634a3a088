"""Delivery benchmark: batched upserts vs one request per lead, into every CRM sandbox.

13,000 synthetic raw leads (about 10,000 unique: 23 % returning customers) are ingested, then
delivered to each CRM sandbox with 50 ms latency per request — and, side by side in the same
run, a per-record baseline (batch_size: 1, one request per lead, the way web-to-lead forms
and flow-based integrations push) into a second sandbox of the same CRM, on a sample of the
same leads (a rate does not depend on the count; the full 10k would take 500 s per CRM).
Then every lead is queued again and delivered again with nothing changed.

    python bench/deliver.py [--raw 13000] [--baseline-sample 500] [--latency-ms 50]

Rate limiting is lifted for both sides so the comparison is of request shapes, not of
leadbridge's own throttling.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from leadbridge.core.app.synthetic import write_jsonl
from leadbridge.core.connector import build, sandboxes
from leadbridge.core.delivery.deliver import deliver
from leadbridge.core.ingest.pipeline import ingest
from leadbridge.core.settings import Settings, load_settings
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import outbox

KINDS = sandboxes.kinds()  # every installed CRM with a sandbox


def _entry(kind: str, sandbox: Any, name: str, batch_size: int | None) -> dict[str, Any]:
    entry = sandboxes.target_entry(kind, sandbox, name=name)
    entry["rate"] = 1000.0
    if batch_size:
        entry["batch_size"] = batch_size
    return entry


def _timed_delivery(settings: Settings, store: Store, name: str, sandbox: Any) -> dict[str, float]:
    target = build(settings.target(name), placeholder=settings.placeholder)
    calls_before = sandbox.api_calls()
    start = time.perf_counter()
    report = deliver(target, store, settings)
    seconds = time.perf_counter() - start
    return {"leads": report.pushed, "calls": sandbox.api_calls() - calls_before, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=int, default=13_000)
    parser.add_argument("--returning", type=float, default=0.2308)
    parser.add_argument("--baseline-sample", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()

    batched = sandboxes.start(KINDS, latency_ms=args.latency_ms)
    baseline = sandboxes.start(KINDS, latency_ms=args.latency_ms)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            leads_file = Path(tmp) / "leads.jsonl"
            unique = write_jsonl(leads_file, args.raw, args.returning)
            targets = [_entry(k, batched[k], k, None) for k in KINDS] + [
                _entry(k, baseline[k], f"{k}-per-record", 1) for k in KINDS
            ]
            settings = load_settings(
                None,
                store=f"sqlite:///{tmp}/bench.db",
                targets=targets,
                sources=[{"name": "f", "kind": "leads_file", "path": str(leads_file)}],
            )
            store = Store(settings.store)
            ingest(build(settings.source("f")), store, settings)
            with store.begin() as conn:  # the baseline gets a sample of the same leads
                keys = repo.lead_keys_active_between(conn, None, None)
                conn.execute(
                    outbox.delete().where(
                        outbox.c.target.like("%-per-record"),
                        outbox.c.lead_key.not_in(keys[: args.baseline_sample]),
                    )
                )
            rows = []
            for kind in KINDS:
                first = _timed_delivery(settings, store, kind, batched[kind])
                base = _timed_delivery(settings, store, f"{kind}-per-record", baseline[kind])
                with store.begin() as conn:
                    repo.enqueue(conn, keys, [kind], repo.utcnow())
                again = _timed_delivery(settings, store, kind, batched[kind])
                rows.append((kind, first, base, again))
    finally:
        sandboxes.stop(batched)
        sandboxes.stop(baseline)

    print(
        f"# {platform.machine()} Python {platform.python_version()}; {args.raw:,} raw leads, "
        f"{unique:,} unique; {args.latency_ms:g} ms per request; baseline sample "
        f"{args.baseline_sample} leads"
    )
    print(
        "| target | leads | API calls | calls / 1,000 leads | leads/s | per-record calls / "
        "1,000 | per-record leads/s | speed-up | calls when unchanged |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind, first, base, again in rows:
        rate, base_rate = first["leads"] / first["seconds"], base["leads"] / base["seconds"]
        print(
            f"| {kind} | {first['leads']:,} | {first['calls']:,} | "
            f"{1000 * first['calls'] / first['leads']:.1f} | {rate:,.0f} | "
            f"{1000 * base['calls'] / base['leads']:.0f} | {base_rate:,.1f} | "
            f"{rate / base_rate:.0f}x | {again['calls']} |"
        )


if __name__ == "__main__":
    main()
