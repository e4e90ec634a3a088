"""Stage-sync benchmark: what one cycle costs when nothing changed, and how fast a change
made in one CRM reaches the others.

500 sample leads are delivered to the four CRM sandboxes (50 ms per request); then
(1) one stage-sync cycle with nothing changed: API calls per CRM, beside a per-record check
(one read per lead per CRM — how record-by-record connectors poll), and (2) a salesperson
sets SQL in Salesforce: the cycles (read + deliver) until every other CRM shows it, and the
wall time of that cycle.

    python bench/stages.py [--leads 500] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import requests

from leadbridge.core.app.synthetic import write_jsonl
from leadbridge.core.connector import build, sandboxes
from leadbridge.core.delivery.deliver import deliver
from leadbridge.core.ingest.pipeline import ingest
from leadbridge.core.settings import load_settings
from leadbridge.core.store.repo import Store
from leadbridge.core.sync.stagesync import pull_stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    crm = sandboxes.start(latency_ms=args.latency_ms)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            leads_file = Path(tmp) / "leads.jsonl"
            write_jsonl(leads_file, args.leads, returning=0.0)
            settings = load_settings(
                None,
                store=f"sqlite:///{tmp}/bench.db",
                targets=[sandboxes.target_entry(k, s) for k, s in crm.items()],
                sources=[{"name": "f", "kind": "leads_file", "path": str(leads_file)}],
            )
            store = Store(settings.store)
            ingest(build(settings.source("f")), store, settings)
            targets = [
                build(c, placeholder=settings.placeholder) for c in settings.target_configs()
            ]
            for target in targets:
                deliver(target, store, settings)
            pull_stages(targets, store, settings)  # the first read sets the watermarks

            quiet = pull_stages(targets, store, settings)
            # Steady state: nothing was modified within the overlap window (the records here
            # were all written seconds ago, so the overlap is what re-reads them above).
            for target in targets:
                target.config.overlap = type(target.config.overlap)(0)
            steady = pull_stages(targets, store, settings)

            key = next(iter(crm["salesforce"].records))
            requests.post(
                f"{crm['salesforce'].url}/_sandbox/stage",
                json={"key": key, "value": "SQL"},
                timeout=5,
            )
            email = crm["salesforce"].records[key]["Email"]
            cycles, started = 0, time.perf_counter()
            while cycles < 5:
                cycles += 1
                pull_stages(targets, store, settings)
                for target in targets:
                    deliver(target, store, settings)
                if (
                    crm["hubspot"].records[email].get("lifecyclestage") == "salesqualifiedlead"
                    and crm["dataverse"].records[key]["lb_leadstage"] == 100000003
                    and crm["webhook"].records[key]["stage"] == "sql"
                ):
                    break
            seconds = time.perf_counter() - started
    finally:
        sandboxes.stop(crm)

    print(f"# {args.leads} leads in every CRM; {args.latency_ms:g} ms per request")
    print(
        "| CRM | quiet cycle, all records written < overlap ago: calls (records read) | "
        "quiet cycle, steady state: calls (records read) | per-record check, calls |"
    )
    print("|---|---:|---:|---:|")
    for name, calls in quiet.api_calls.items():
        print(
            f"| {name} | {calls} ({quiet.read[name]}) | {steady.api_calls[name]} "
            f"({steady.read[name]}) | {args.leads} |"
        )
    print(
        f"\nSQL set in Salesforce reached HubSpot, Dataverse and the webhook in {cycles} "
        f"cycle(s), {seconds:.2f} s (read + reconcile + deliver)."
    )


if __name__ == "__main__":
    main()
