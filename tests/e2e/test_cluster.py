"""`engine: cluster` for real: three `leadbridge run` replicas on the local PostgreSQL, the
CRM sandboxes in their own process, 5,000 raw leads from two polled sources (Azurite's table
and a leads file) plus webhook posts to every replica; one replica SIGKILLs itself between a
CRM's confirmation and its recording. Afterwards every unique lead is in each CRM exactly
once, no source was polled (and no target written) by two replicas at once, no periodic job
ran twice in one period, the dead replica's job ran again elsewhere, and `status` shows the
replicas as they are. "At once" is read from the replicas' job runs and checked against the
other side's own logs: every request Azurite and each CRM sandbox logged (with the
replica's User-Agent) falls inside a run of that job by that replica.

And SIGTERM to every replica mid-delivery: each exits 0 well within 30 s, and the restarted
cluster finishes with every lead once."""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from leadbridge.core.app.synthetic import write_jsonl

from .helpers import (
    LEADBRIDGE,
    cluster_config,
    env,
    sandbox_records,
    sandbox_requests,
    start_replicas,
    start_sandboxes,
    stop_all,
    wait_until,
    write_config,
)

TOKEN = "cluster-webhook-token-0123456789"
TABLE_ROWS = 1_200  # three pages of the table source (page_size 500)
FILE_LINES = 1_200
POSTS_PER_REPLICA = 10
CRMS = ("salesforce", "hubspot", "dataverse")
KEY_FIELD = {"salesforce": "LeadBridge_Key__c", "dataverse": "lb_leadkey"}


def _table_rows(count: int) -> tuple[list[dict[str, str]], set[tuple[str, str]]]:
    """Table rows with returning customers (the same person and offer again)."""
    rows, unique = [], set()
    for i in range(count):
        person, offer = i % 2_000, f"contoso.cluster-{i % 3}"
        email = f"table{person}@northwind{person % 50}.example.com"
        unique.add((email, offer))
        rows.append(
            {
                "PartitionKey": "2026-11-25",
                "RowKey": f"{i:06d}",
                "ActionCode": "INS",
                "LeadSource": f"AzureMarketplace-INS|{offer}",
                "CustomerInfo": json.dumps(
                    {"Email": email, "LastName": f"T{person}", "Company": "Northwind"}
                ),
            }
        )
    return rows, unique


def _fill_table(connection_string: str, name: str, rows: list[dict[str, str]]) -> None:
    from azure.data.tables import TableServiceClient

    table = TableServiceClient.from_connection_string(connection_string).create_table(name)
    for start in range(0, len(rows), 100):  # one partition: entity-group transactions of 100
        table.submit_transaction([("create", row) for row in rows[start : start + 100]])


def _post(port: int, i: int) -> int | None:
    """The webhook's answer, or None when the replica died with the post in hand (replica 0
    may reach its crash point while the posts are going out; it never answered, so Partner
    Center would retry — it is not counted as landed)."""
    payload = {
        "LeadSource": "AppSource (SPZA)-PLT|contoso.cluster-hook",
        "ActionCode": "PLT",
        "UserDetails": {
            "LastName": f"H{i}",
            "Company": "Fabrikam",
            "Email": f"hook{i}@fabrikam.example.com",
        },
    }
    url = f"http://127.0.0.1:{port}/marketplace/leads/{TOKEN}"
    try:
        return requests.post(url, json=payload, timeout=10).status_code
    except requests.ConnectionError:
        return None


@pytest.mark.slow
@pytest.mark.azurite
def test_three_replicas_one_killed_every_lead_once(
    tmp_path: Path, pg_url: str, azurite: str, azurite_log: Path
) -> None:
    table_name = f"Cluster{int(time.time())}"
    rows, table_unique = _table_rows(TABLE_ROWS)
    _fill_table(azurite, table_name, rows)
    leads_file = tmp_path / "leads.jsonl"
    file_unique = write_jsonl(leads_file, FILE_LINES, seed=11)
    sandbox_proc, all_targets = start_sandboxes(tmp_path, latency_ms=20)
    targets = [t for t in all_targets if t["kind"] in CRMS]
    for target in targets:
        target["every"] = "2s"
        target["batch_size"] = 50  # enough batches for the kill to land mid-delivery
    config = write_config(
        tmp_path,
        pg_url,
        [
            {"name": "hook", "kind": "marketplace_https", "token": TOKEN},
            {
                "name": "table",
                "kind": "marketplace_table",
                "connection_string": azurite,
                "table": table_name,
                "every": "2s",
                "page_size": 500,
            },
            {"name": "file", "kind": "leads_file", "path": str(leads_file), "every": "2s"},
        ],
        targets,
        engine="cluster",
        batch_size=250,
        http={"host": "127.0.0.1", "port": 8080},
        delivery={"claim_ttl": "5s"},
        cluster={"heartbeat": "1s", "stalled_after": "3s", "sweep_every": "2s"},
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # Replica 0 SIGKILLs itself the second time a CRM confirms a batch it sent, before
        # recording it: the lock, the claims and a doing job die with it.
        crash = {0: {"LEADBRIDGE_CRASH_AT": "delivery.after_upsert:2"}}
        procs, ports = start_replicas(config, 3, tmp_path, crash)
        # The webhook works on every replica (replica 0 may already be dead by its turn).
        hook_emails, unanswered = set(), 0
        for n, port in enumerate(ports):
            for i in range(POSTS_PER_REPLICA):
                if procs[n].poll() is not None:
                    continue
                answer = _post(port, n * POSTS_PER_REPLICA + i)
                if answer == 202:
                    hook_emails.add(f"hook{n * POSTS_PER_REPLICA + i}@fabrikam.example.com")
                else:  # died with it in hand: landed or not, but never acknowledged
                    assert answer is None and n == 0
                    unanswered += 1
        assert len(hook_emails) >= 2 * POSTS_PER_REPLICA

        engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))

        def one(sql: str, **params: Any) -> Any:
            with engine.connect() as conn:
                return conn.execute(sa.text(sql), params).scalar()

        sales = next(t for t in targets if t["kind"] == "salesforce")
        wait_until(
            lambda: procs[0].poll() is not None or len(sandbox_records(sales)) > 500,
            120,
            "replica 0 to reach its crash point",
        )
        if procs[0].poll() is None:  # others took the deliveries: kill it inside a job anyway
            wait_until(lambda: _frozen_in_a_job(procs[0], one), 60, "replica 0 to be in a job")
            procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(timeout=10)
        assert procs[0].returncode == -signal.SIGKILL
        died_at = datetime.now(UTC)

        # Every acknowledged post landed; one that died unanswered may have, too.
        posted = one("SELECT count(*) FROM raw_leads WHERE source = 'hook'")
        assert len(hook_emails) <= posted <= len(hook_emails) + unanswered
        expected_raw = TABLE_ROWS + FILE_LINES + posted
        unique = len(table_unique) + file_unique + posted

        def progress() -> dict[str, Any]:
            return {
                "raw": one("SELECT count(*) FROM raw_leads"),
                "new": one("SELECT count(*) FROM raw_leads WHERE status = 'new'"),
                "outbox": one("SELECT count(*) FROM outbox"),
                **{t["kind"]: len(sandbox_records(t)) for t in targets},
            }

        def settled() -> bool:
            now = progress()
            return (now["raw"], now["new"], now["outbox"]) == (expected_raw, 0, 0) and all(
                now[kind] >= unique for kind in KEY_FIELD
            )

        wait_until(settled, 240, "every lead in every CRM after the kill", progress)

        # status: the killed replica is lost (silent for stalled_after), the others up.
        def status() -> dict[str, Any]:
            shown = subprocess.run(
                [*LEADBRIDGE, "--config", str(config), "status", "--format", "json"],
                env=env(),
                capture_output=True,
                timeout=60,
                check=True,
            )
            return json.loads(shown.stdout)

        def states() -> list[str]:
            return sorted(r["state"] for r in status()["replicas"])

        wait_until(lambda: states() == ["lost", "up", "up"], 30, "status to show", states)
        shown = status()
        assert set(shown["queue"]) == {"todo", "doing"}  # cluster mode shows its queue
        up = {r["name"] for r in shown["replicas"] if r["state"] == "up"}
        assert shown["jobs"]["ingest:table"]["replica"] in up

        for proc in procs[1:]:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=40) == 0
        crm_requests = {
            t["name"]: [
                (datetime.fromtimestamp(r["at"], UTC), _replica_of(r["agent"]))
                for r in sandbox_requests(t)
                if r["api"]
            ]
            for t in targets
        }

        # Every unique lead in each CRM exactly once (HubSpot: one contact per person).
        emails = {e for e, _ in table_unique} | {
            f"hook{i}@fabrikam.example.com" for i in range(3 * POSTS_PER_REPLICA)
        }
        for target in targets:
            records = sandbox_records(target)
            if target["kind"] == "hubspot":
                people = [r["email"] for r in records]
                assert len(people) == len(set(people)), "hubspot: a person twice"
                assert {e for e in people if not e.startswith(("table", "hook"))}  # file leads
                assert {e for e in people if e.startswith(("table", "hook"))} <= emails
            else:
                keys = [r[KEY_FIELD[target["kind"]]] for r in records]
                assert len(keys) == len(set(keys)) == unique, target["kind"]
    finally:
        stop_all(procs, sandbox_proc)

    with engine.connect() as conn:
        q = lambda sql: conn.execute(sa.text(sql)).all()  # noqa: E731
        # Nothing lost or processed twice: one action event per raw lead.
        assert q("SELECT count(*) FROM events WHERE kind = 'action'")[0][0] == expected_raw
        assert q("SELECT count(*) FROM leads")[0][0] == unique
        assert q("SELECT count(*) FROM dead_letters")[0][0] == 0
        doing = q("SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'")[0][0]
        runs = q(
            "SELECT job, replica, trigger, period, started_at, finished_at FROM job_runs "
            "ORDER BY started_at"
        )
    killed = next(r.replica for r in runs if r.replica.endswith(f":{procs[0].pid}"))
    _assert_no_overlaps(runs, killed, died_at)
    polls = _azurite_requests(azurite_log, table_name)
    assert polls, "Azurite logged no request of leadbridge's"
    _assert_inside_runs(polls, runs, {"ingest:table"}, killed, died_at)
    for name, made in crm_requests.items():
        assert made, f"{name}: no request logged"
        _assert_inside_runs(made, runs, {f"deliver:{name}", f"pull:{name}"}, killed, died_at)
    # No periodic job ran twice in one period.
    per_period: dict[tuple[str, int], int] = defaultdict(int)
    for run in runs:
        if run.trigger == "periodic" and run.finished_at is not None:
            per_period[(run.job, run.period)] += 1
    assert per_period and max(per_period.values()) == 1
    # The job the dead replica had in hand ran again on another replica.
    unfinished = [r for r in runs if r.replica == killed and r.finished_at is None]
    assert unfinished, "replica 0 died between jobs"
    for dead in unfinished:
        assert any(
            r.job == dead.job
            and r.replica != killed
            and r.started_at > dead.started_at
            and r.finished_at is not None
            for r in runs
        ), dead.job
    # …and no queue job is left `doing` behind it, holding a lock.
    assert doing == 0


def _frozen_in_a_job(proc: subprocess.Popen[bytes], one: Any) -> bool:
    """Freeze the replica (SIGSTOP) and look: True, still frozen, when a run of its is on
    record unfinished; else it thaws and runs on. Looking first and killing after would race
    a short job's end (a poll that finds nothing takes milliseconds)."""
    proc.send_signal(signal.SIGSTOP)
    time.sleep(0.3)  # a commit it sent before the stop lands
    in_hand = one(
        "SELECT count(*) FROM job_runs WHERE replica LIKE :me AND finished_at IS NULL",
        me=f"%:{proc.pid}",
    )
    if not in_hand:
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.2)  # let it reach its next job
    return bool(in_hand)


def _assert_no_overlaps(runs: list[Any], killed: str, died_at: datetime) -> None:
    """Polls of one source, and deliveries to one target, never overlap in time: each run
    ends (or its replica dies) before the next one of the same job starts."""
    by_job: dict[str, list[Any]] = defaultdict(list)
    for run in runs:
        if run.job.startswith(("ingest:", "deliver:", "pull:")):
            by_job[run.job].append(run)
    assert {"ingest:table", "ingest:file"} <= set(by_job)
    for job, job_runs in by_job.items():
        for before, after in itertools.pairwise(job_runs):
            ended = before.finished_at or (died_at if before.replica == killed else None)
            assert ended is not None, f"{job}: a run never ended"
            assert ended <= after.started_at, f"{job}: {before} overlaps {after}"


AZURITE_LINE = re.compile(
    r"^(\S+) \S+ info: TableStorageContextMiddleware: RequestMethod=\w+ "
    r"RequestURL=(\S+) RequestHeaders:(\{.*\}) ClientIP"
)


def _replica_of(agent: str | None) -> str | None:
    found = re.match(r"leadbridge/\S+ \(([^)]+)\)", agent or "")
    return found[1] if found else None


def _azurite_requests(log: Path, table: str) -> list[tuple[datetime, str]]:
    """(time, replica) of each request leadbridge made to `table`, from Azurite's own log."""
    out = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = AZURITE_LINE.match(line)
        if match is None or f"/{table}" not in match[2]:
            continue
        replica = _replica_of(json.loads(match[3]).get("user-agent"))
        if replica is not None:  # the test's own writes carry no leadbridge agent
            out.append((datetime.fromisoformat(match[1].replace("Z", "+00:00")), replica))
    return out


def _assert_inside_runs(
    made: list[tuple[datetime, str | None]],
    runs: list[Any],
    jobs: set[str],
    killed: str,
    died_at: datetime,
) -> None:
    """Each request was made by a replica while it ran one of `jobs` (5 ms for Azurite's
    millisecond timestamps): the runs whose overlaps were checked are the whole story."""
    slack = timedelta(milliseconds=5)
    for at, replica in made:
        assert replica is not None, "a request without leadbridge's User-Agent"
        assert any(
            run.replica == replica
            and run.job in jobs
            and run.started_at - slack
            <= at
            <= (run.finished_at or (died_at if replica == killed else at - slack)) + slack
            for run in runs
        ), f"a request at {at} by {replica} outside its runs of {sorted(jobs)}"


@pytest.mark.slow
def test_sigterm_mid_delivery_exits_cleanly_and_a_restart_finishes(
    tmp_path: Path, pg_url: str
) -> None:
    """Both replicas get SIGTERM while delivering (a rolling restart, a scale-down): each
    exits 0 well within 30 s, and the restarted cluster finishes — every lead once."""
    leads_file = tmp_path / "leads.jsonl"
    unique = write_jsonl(leads_file, 1_200, seed=5)
    sandbox_proc, all_targets = start_sandboxes(tmp_path, latency_ms=150)
    targets = [t for t in all_targets if t["kind"] in ("salesforce", "webhook")]
    for target in targets:
        target.update(batch_size=20, every="2s")
    config = cluster_config(tmp_path, pg_url, leads_file, targets, delivery={"claim_ttl": "10s"})
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs, _ = start_replicas(config, 2, tmp_path)
        sales = next(t for t in targets if t["kind"] == "salesforce")
        wait_until(lambda: len(sandbox_records(sales)) >= 100, 120, "delivery to be underway")
        stopping = time.monotonic()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        assert [proc.wait(timeout=40) for proc in procs] == [0, 0]
        assert time.monotonic() - stopping < 30
        assert len(sandbox_records(sales)) < unique, "delivery had finished before SIGTERM"

        procs, _ = start_replicas(config, 2, tmp_path)
        wait_until(
            lambda: all(len(sandbox_records(t)) >= unique for t in targets),
            180,
            "every lead after the restart",
            lambda: {t["kind"]: len(sandbox_records(t)) for t in targets},
        )
        for target in targets:
            key = "LeadBridge_Key__c" if target["kind"] == "salesforce" else "lead_key"
            keys = [r[key] for r in sandbox_records(target)]
            assert len(keys) == len(set(keys)) == unique, target["kind"]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        assert [proc.wait(timeout=40) for proc in procs] == [0, 0]
    finally:
        stop_all(procs, sandbox_proc)
