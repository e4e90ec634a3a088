"""Ingest from an Azure Table (Azurite on loopback): leads/s and peak RSS by table size.

Issue 21 asks that a million-row Azure Table be read in bounded memory. This starts Azurite's
table service on a free 127.0.0.1 port (in memory when the binary supports it, else in a
temporary folder; telemetry off; stopped at the end), and for each size N:

1. fills a table with N marketplace rows shaped like tests/e2e/test_cluster.py's
   `_table_rows` (PartitionKey, RowKey, ActionCode, LeadSource, a CustomerInfo JSON
   string; returning customers: the last third of the rows are the same person and offer
   again), by entity-group transactions of 100 rows of one partition, from child
   processes of their own (`--fillers`, default one a core) so the filler's memory counts
   nowhere;
2. in a fresh child, the baseline: the plain azure-data-tables SDK reading the table
   (`list_entities(results_per_page=1000)`) and dropping every entity — what any reader of
   the table pays;
3. in a fresh child, leadbridge's source alone: `MarketplaceTableSource.fetch()` read to
   the end and dropped (entity → raw lead and cursor; no store) — the reading's own share;
4. in a fresh child, leadbridge: `ingest()` of a `MarketplaceTableSource` (page_size 1000)
   into a fresh SQLite store, landing and processing every row.

Peak RSS is each child's own `ru_maxrss`. Past its fourth batch an ingest parses on a
spawned worker process (core/ingest/parse_ahead.py), which is not in the child's own
figure: its peak is printed apart ("worker"). Pages are the responses the child's table
client received, counted at the HTTP layer. Azurite's own resident memory (it holds every
table in memory) is printed after each size.

    python bench/ingest_table.py --sizes 10000 100000 [--before DIR]

With `--before DIR` (an earlier tree as a `leadbridge` package, put first on PYTHONPATH),
leadbridge's read runs a second time from that tree, on the same table, right after.

Needs Azurite: `cd tests/azurite && npm ci`. Sends nothing anywhere but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

AZURITE_DIR = Path(__file__).resolve().parent.parent / "tests" / "azurite"
KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
    "K1SZFPTOtr/KBHBeksoGMGw=="
)  # Azurite's published well-known dev key
PAGE = 1_000
GROUP = 100  # the Table service's limit on an entity-group transaction
ROWS_PER_PARTITION = 10_000  # a partition a day (PartitionKey: the date)
FIRST_DAY = date(2024, 1, 1)


def connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};"
        f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )


def azurite_binary() -> Path:
    local = AZURITE_DIR / "node_modules" / ".bin" / "azurite-table"
    found = local if local.exists() else shutil.which("azurite-table")
    if not found:
        raise SystemExit("Azurite is not installed: cd tests/azurite && npm ci")
    return Path(found)


@contextmanager
def azurite() -> Iterator[tuple[subprocess.Popen[bytes], int, str]]:
    """Azurite's table service on a free loopback port: the process, its port, and how it
    keeps its data ("memory" or the temporary folder's)."""
    binary = azurite_binary()
    usage = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=60)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="azurite-") as workspace:
        argv = [str(binary), "--tableHost", "127.0.0.1", "--tablePort", str(port), "--silent"]
        argv += ["--skipApiVersionCheck", "--disableProductStyleUrl"]
        if "--disableTelemetry" in usage.stdout:
            argv.append("--disableTelemetry")  # it would otherwise report to Microsoft
        if "--inMemoryPersistence" in usage.stdout:
            argv.append("--inMemoryPersistence")
            persistence = "memory"
        else:
            argv += ["--location", workspace]
            persistence = "a temporary folder"
        proc = subprocess.Popen(
            argv, cwd=workspace, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("Azurite did not start within 30 s") from None
                    time.sleep(0.2)
            yield proc, port, persistence
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def process_memory_mb(pid: int) -> tuple[float, float]:
    """(resident now, resident peak) of a running process, from /proc (0s where absent)."""
    found = {"VmRSS": 0.0, "VmHWM": 0.0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in found:
                found[name] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return found["VmRSS"], found["VmHWM"]


def rows_of(size: int) -> Iterator[list[dict[str, str]]]:
    """The table's rows, a transaction's worth (one partition, 100 rows) at a time.

    As `_table_rows` makes them, with three offers; person `i % people` and offer
    `person % 3`, where people is two thirds of the rows: the last third are returning
    customers (the same person and offer again), so unique leads = people.
    """
    people = max(1, size * 2 // 3)
    group: list[dict[str, str]] = []
    for i in range(size):
        person = i % people
        offer = f"contoso.bench-{person % 3}"
        email = f"table{person}@northwind{person % 50}.example.com"
        day = i // ROWS_PER_PARTITION
        group.append(
            {
                "PartitionKey": (FIRST_DAY + timedelta(days=day)).isoformat(),
                "RowKey": f"{i:09d}",
                "ActionCode": "INS",
                "LeadSource": f"AzureMarketplace-INS|{offer}",
                "CustomerInfo": json.dumps(
                    {"Email": email, "LastName": f"T{person}", "Company": "Northwind"}
                ),
            }
        )
        last_of_partition = (i + 1) % ROWS_PER_PARTITION == 0
        if len(group) == GROUP or last_of_partition or i == size - 1:
            yield group
            group = []


def fill(conn: str, table: str, size: int, part: int, parts: int) -> dict[str, Any]:
    """Runs in a child: write this part's transactions (every `parts`-th, from `part`)."""
    from azure.data.tables import TableClient

    client = TableClient.from_connection_string(conn, table_name=table)
    start, written, transactions = time.perf_counter(), 0, 0
    for n, group in enumerate(rows_of(size)):
        if n % parts == part:
            client.submit_transaction([("create", row) for row in group])
            written += len(group)
            transactions += 1
    client.close()
    return {"rows": written, "transactions": transactions, "fill_s": time.perf_counter() - start}


def fill_table(conn: str, table: str, size: int, parts: int) -> dict[str, Any]:
    """Create the table and fill it from `parts` child processes at once: the SDK's building
    and parsing of a transaction's multipart body costs the filler ~0.12 CPU-s per 100 rows,
    three times what Azurite spends, so one filler would leave Azurite idle."""
    from azure.data.tables import TableServiceClient

    TableServiceClient.from_connection_string(conn).create_table(table)
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--fill", conn, table, str(size), str(k), str(parts)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(parts)
    ]
    done = [json.loads(c.communicate()[0].strip().splitlines()[-1]) for c in children]
    if any(c.returncode for c in children):
        raise SystemExit("a filler failed")
    rows = sum(d["rows"] for d in done)
    assert rows == size, (rows, size)
    return {"rows": rows, "transactions": sum(d["transactions"] for d in done)}


def _counting(pages: list[int]) -> Any:
    def hook(response: Any) -> None:
        if response.http_request.method == "GET":
            pages.append(1)

    return hook


def read_sdk(conn: str, table: str, _workdir: Path) -> dict[str, Any]:
    """The baseline: every entity read through the SDK, nothing done with it."""
    from azure.data.tables import TableClient

    pages: list[int] = []
    client = TableClient.from_connection_string(
        conn, table_name=table, raw_response_hook=_counting(pages)
    )
    return drain(client.list_entities(results_per_page=PAGE), pages, client.close)


def drain(records: Iterable[Any], pages: list[int], close: Callable[[], None]) -> dict[str, Any]:
    """Read every record and drop it: the rate and memory of reading alone."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    rows = sum(1 for _ in records)
    wall = time.perf_counter() - start
    close()
    return {
        "rows": rows,
        "leads": rows,
        "wall_s": wall,
        "pages": len(pages),
        "rss_before_mb": rss_before / 1024,
    }


def table_source(conn: str, table: str, pages: list[int]) -> Any:
    """The leadbridge source of the table, its client the one the source would build for
    itself plus the page counter."""
    from azure.data.tables import TableClient

    from leadbridge.connectors.marketplace.table import (
        MarketplaceTableConfig,
        MarketplaceTableSource,
    )
    from leadbridge.core.support.whoami import user_agent

    client = TableClient.from_connection_string(
        conn, table_name=table, user_agent=user_agent(), raw_response_hook=_counting(pages)
    )
    config = MarketplaceTableConfig(
        name="table", connection_string=conn, table=table, page_size=PAGE
    )
    return MarketplaceTableSource(config, client=client)


def read_source(conn: str, table: str, _workdir: Path) -> dict[str, Any]:
    """leadbridge's reading alone: the source's `fetch()` (SDK entity → landed raw lead and
    its cursor), every record dropped — no store, no processing."""
    pages: list[int] = []
    source = table_source(conn, table, pages)
    return drain(source.fetch(None), pages, source.client.close)


def read_leadbridge(conn: str, table: str, workdir: Path) -> dict[str, Any]:
    """leadbridge: `ingest()` of the table source into a fresh SQLite store."""
    from leadbridge.core.ingest.pipeline import ingest
    from leadbridge.core.settings import load_settings
    from leadbridge.core.store.repo import Store

    source = {"name": "table", "kind": "marketplace_table", "connection_string": conn}
    source |= {"table": table, "page_size": PAGE}
    store_url = f"sqlite:///{workdir / f'{table}.db'}"
    settings = load_settings(None, store=store_url, sources=[source])
    store = Store(settings.store)
    pages: list[int] = []
    reader = table_source(conn, table, pages)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    report = ingest(reader, store, settings)
    wall = time.perf_counter() - start
    reader.client.close()
    store.dispose()
    assert not report.quarantined and not report.problems, report
    return {
        "rows": report.fetched,
        "leads": report.processed,
        "created": report.leads_created,
        "wall_s": wall,
        "pages": len(pages),
        "batch_size": settings.batch_size,
        "rss_before_mb": rss_before / 1024,
    }


_READERS = {"sdk": read_sdk, "source": read_source, "leadbridge": read_leadbridge}


def child(reader: str, conn: str, table: str, workdir: Path) -> dict[str, Any]:
    cpu = time.process_time()
    result = _READERS[reader](conn, table, workdir)
    result["cpu_s"] = time.process_time() - cpu
    result["leads_per_s"] = result["leads"] / result["wall_s"]
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Its own children (the parse worker), waited for by now: the largest one's peak.
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["worker_peak_rss_mb"] = workers.ru_maxrss / 1024
    result["worker_cpu_s"] = workers.ru_utime + workers.ru_stime
    return result


def run(args: list[str], pythonpath: Path | None = None) -> dict[str, Any]:
    env = os.environ | ({"PYTHONPATH": str(pythonpath)} if pythonpath else {})
    out = subprocess.run(
        [sys.executable, __file__, *args], check=False, capture_output=True, text=True, env=env
    )
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"{args[0]} {args[1]} failed (exit {out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def delete_table(conn: str, table: str) -> None:
    from azure.data.tables import TableServiceClient

    TableServiceClient.from_connection_string(conn).delete_table(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--keep", action="store_true", help="keep each size's table")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)  # reader conn table dir
    parser.add_argument("--fillers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--fill", nargs=5, help=argparse.SUPPRESS)  # conn table size k of
    parser.add_argument(
        "--before",
        type=Path,
        help="a directory holding an earlier tree as a `leadbridge` package (leadbridge/core, "
        "leadbridge/connectors): leadbridge's read runs again from it, on the same table",
    )
    args = parser.parse_args()
    if args.fill:
        conn, table, size, part, parts = args.fill
        print(json.dumps(fill(conn, table, int(size), int(part), int(parts))))
        return
    if args.child:
        reader, conn, table, workdir = args.child
        print(json.dumps(child(reader, conn, table, Path(workdir))))
        return

    with azurite() as (proc, port, persistence):
        conn = connection_string(port)
        print(
            f"# {platform.node()} {platform.processor() or platform.machine()} "
            f"{os.cpu_count()} cores, Python {platform.python_version()}; Azurite "
            f"(pid {proc.pid}) in {persistence} on 127.0.0.1; pages of {PAGE}; SQLite store"
        )
        print(
            "| rows | unique leads | fill s | SDK rows/s | SDK peak RSS MB | SDK pages "
            "| source fetch only rows/s | source peak RSS MB "
            "| leadbridge leads/s | leadbridge peak RSS MB | worker peak RSS MB "
            "| leadbridge pages | leadbridge / SDK | Azurite RSS MB |"
        )
        print("|---:" * 14 + "|", flush=True)
        notes = []
        for size in args.sizes:
            table = f"Bench{size}t{time.monotonic_ns() % 10**6}"
            started = time.perf_counter()
            filled = fill_table(conn, table, size, args.fillers)
            fill_s = time.perf_counter() - started
            with tempfile.TemporaryDirectory(prefix="lb-bench-") as tmp:
                sdk = run(["--child", "sdk", conn, table, tmp])
                alone = run(["--child", "source", conn, table, tmp])
                ours = run(["--child", "leadbridge", conn, table, tmp])
                if args.before is not None:  # its own store, beside the first
                    (Path(tmp) / "before").mkdir()
                    before_dir = str(Path(tmp) / "before")
                    earlier = run(["--child", "leadbridge", conn, table, before_dir], args.before)
            assert sdk["rows"] == alone["rows"] == ours["rows"] == ours["leads"] == size
            azurite_rss, azurite_peak = process_memory_mb(proc.pid)
            unique = max(1, size * 2 // 3)
            assert ours["created"] == unique, (ours["created"], unique)
            print(
                f"| {size:,} | {unique:,} | {fill_s:.1f} | {sdk['leads_per_s']:,.0f} | "
                f"{sdk['peak_rss_mb']:.0f} | {sdk['pages']} | {alone['leads_per_s']:,.0f} | "
                f"{alone['peak_rss_mb']:.0f} | {ours['leads_per_s']:,.0f} | "
                f"{ours['peak_rss_mb']:.0f} | {ours['worker_peak_rss_mb']:.0f} | "
                f"{ours['pages']} | {ours['leads_per_s'] / sdk['leads_per_s']:.2f} | "
                f"{azurite_rss:,.0f} |",
                flush=True,
            )
            notes.append(
                f"# {size:,}: filled by {filled['transactions']:,} transactions of <= {GROUP} "
                f"from {args.fillers} processes in {fill_s:.1f} s; "
                "RSS before reading (imports, client, store): "
                f"SDK {sdk['rss_before_mb']:.0f} MB, leadbridge {ours['rss_before_mb']:.0f} MB; "
                f"CPU s: SDK {sdk['cpu_s']:.1f}, source alone {alone['cpu_s']:.1f}, "
                f"leadbridge {ours['cpu_s']:.1f} + parse worker "
                f"{ours['worker_cpu_s']:.1f} (batches of {ours['batch_size']}); Azurite peak "
                f"RSS {azurite_peak:,.0f} MB; load average {os.getloadavg()[0]:.1f}"
            )
            if args.before is not None:
                notes.append(
                    f"# {size:,}, the tree in {args.before} on the same table: "
                    f"{earlier['leads_per_s']:,.0f} leads/s "
                    f"({ours['leads_per_s'] / earlier['leads_per_s']:.2f}x now), peak RSS "
                    f"{earlier['peak_rss_mb']:.0f} MB + worker "
                    f"{earlier['worker_peak_rss_mb']:.0f} MB, CPU s {earlier['cpu_s']:.1f} + "
                    f"{earlier['worker_cpu_s']:.1f}"
                )
            if not args.keep:
                delete_table(conn, table)
        print("\n".join(notes))


if __name__ == "__main__":
    main()
