"""People and companies benchmark: what contacts and accounts cost a Dataverse delivery.

13,000 synthetic raw leads (about 10,000 unique) are ingested once, then delivered into two
Dataverse sandboxes with 50 ms latency per request: the baseline with `model: leads` (loose
leads, one PATCH per lead) and, side by side in the same run, `model: contacts_and_leads`
(the default: per lead one change set of account, contact and lead, the lead bound to both).
The figure that matters is calls per 1,000 new leads (the budget is 10); leads/s says what
the bigger `$batch` bodies cost.

    python bench/people.py [--raw 13000] [--latency-ms 50]

Rate limiting is lifted on both sides so the comparison is of request shapes.
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
from leadbridge.core.settings import load_settings
from leadbridge.core.store.repo import Store

MODELS = ("leads", "contacts_and_leads")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=int, default=13_000)
    parser.add_argument("--returning", type=float, default=0.2308)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()

    running = {m: sandboxes.start(["dataverse"], latency_ms=args.latency_ms) for m in MODELS}
    rows: list[tuple[str, dict[str, Any]]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            leads_file = Path(tmp) / "leads.jsonl"
            unique = write_jsonl(leads_file, args.raw, args.returning)
            targets = [
                sandboxes.target_entry("dataverse", running[m]["dataverse"], name=m)
                | {"rate": 1000.0, "model": m}
                for m in MODELS
            ]
            settings = load_settings(
                None,
                store=f"sqlite:///{tmp}/bench.db",
                targets=targets,
                sources=[{"name": "f", "kind": "leads_file", "path": str(leads_file)}],
            )
            store = Store(settings.store)
            ingest(build(settings.source("f")), store, settings)
            for model in MODELS:
                sandbox = running[model]["dataverse"]
                target = build(settings.target(model), placeholder=settings.placeholder)
                start = time.perf_counter()
                report = deliver(target, store, settings)
                seconds = time.perf_counter() - start
                rows.append(
                    (
                        model,
                        {
                            "leads": report.pushed,
                            "calls": sandbox.api_calls(),
                            "seconds": seconds,
                            "contacts": len(sandbox.contacts),
                            "accounts": len(sandbox.accounts),
                        },
                    )
                )
            store.dispose()
    finally:
        for started in running.values():
            sandboxes.stop(started)

    print(
        f"# {platform.machine()} Python {platform.python_version()}; {args.raw:,} raw leads, "
        f"{unique:,} unique; {args.latency_ms:g} ms per request"
    )
    print("| model | leads | contacts | accounts | API calls | calls / 1,000 leads | leads/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for model, r in rows:
        print(
            f"| {model} | {r['leads']:,} | {r['contacts']:,} | {r['accounts']:,} | {r['calls']} "
            f"| {1000 * r['calls'] / r['leads']:.1f} | {r['leads'] / r['seconds']:,.0f} |"
        )
    base, people = rows[0][1], rows[1][1]
    ratio = (people["leads"] / people["seconds"]) / (base["leads"] / base["seconds"])
    print(f"contacts_and_leads vs leads: {ratio:.2f}x the leads/s")


if __name__ == "__main__":
    main()
