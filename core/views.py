"""Read models for the CLI: leads, one lead's story, and the operator's status page.

Every function returns plain JSON-ready data; the shapes are the documented, stable
`--format json` output (docs/cli-json.md). Add keys freely; never rename or remove one.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from leadbridge.core.logs import mask_email
from leadbridge.core.models import Lead, lead_from_json, lead_to_dict
from leadbridge.core.pipeline import LAST_TEST_LEAD
from leadbridge.core.store import repo, runs
from leadbridge.core.store.repo import utcnow
from leadbridge.core.store.tables import dead_letters, events, leads, quarantine, raw_leads

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
LEAD_COLUMNS = (
    "lead_key",
    "email",
    "first_name",
    "last_name",
    "company",
    "title",
    "country",
    "phone",
    "offer_key",
    "offer_id",
    "offer_title",
    "channel",
    "stage",
    "score",
    "do_not_contact",
    "actions",
    "flags",
    "first_seen",
    "last_seen",
)


def lead_summary(lead: Lead) -> dict[str, Any]:
    data = lead_to_dict(lead)
    return {name: data.get(name) for name in LEAD_COLUMNS}


def list_leads(
    conn: Connection, stage: str | None = None, offer: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    stmt = select(leads.c.data).order_by(leads.c.first_seen, leads.c.lead_key)
    if stage:
        stmt = stmt.where(leads.c.stage == stage.lower())
    if offer:
        stmt = stmt.where(leads.c.offer_key == offer)
    if limit:
        stmt = stmt.limit(limit)
    return [lead_summary(lead_from_json(row.data)) for row in conn.execute(stmt)]


def find_leads(conn: Connection, ref: str) -> list[Lead]:
    """A lead key, or every lead of an email address."""
    ref = ref.strip()
    if _HEX32.match(ref.lower()):
        found = repo.load_leads(conn, [ref.lower()])
        return list(found.values())
    stmt = select(leads.c.data).where(leads.c.email == ref.lower()).order_by(leads.c.first_seen)
    return [lead_from_json(row.data) for row in conn.execute(stmt)]


def lead_story(conn: Connection, lead: Lead) -> dict[str, Any]:
    """Everything about one lead: fields, why it scored what it did, its history, its CRM links."""
    history = [
        {
            "at": row.at.isoformat(),
            "kind": row.kind,
            "actor": row.actor,
            "data": row.data,
            "raw_lead_id": row.raw_lead_id,
        }
        for row in repo.lead_history(conn, lead.lead_key)
    ]
    links = [
        {
            "target": row.target,
            "external_id": row.external_id,
            "state": row.state,
            "pushed_stage": row.pushed_stage,
            "pushed_at": row.pushed_at.isoformat() if row.pushed_at else None,
        }
        for row in repo.lead_links(conn, lead.lead_key)
    ]
    raws = [
        {
            "id": row.id,
            "source": row.source,
            "status": row.status,
            "received_at": row.received_at.isoformat(),
        }
        for row in conn.execute(
            select(raw_leads.c.id, raw_leads.c.source, raw_leads.c.status, raw_leads.c.received_at)
            .where(raw_leads.c.lead_key == lead.lead_key)
            .order_by(raw_leads.c.id)
        )
    ]
    return {
        "lead": lead_summary(lead)
        | {"notes": lead.notes, "attribution": lead.attribution, "score_rules": lead.score_rules},
        "history": history,
        "links": links,
        "raw_leads": raws,
    }


def raw_story(conn: Connection, raw_id: int) -> dict[str, Any] | None:
    """A landed raw lead and, if it was quarantined, why and what would fix it."""
    row = conn.execute(select(raw_leads).where(raw_leads.c.id == raw_id)).first()
    if row is None:
        return None
    q = conn.execute(select(quarantine).where(quarantine.c.raw_lead_id == raw_id)).first()
    return {
        "raw_lead": {
            "id": row.id,
            "source": row.source,
            "source_key": row.source_key,
            "kind": row.kind,
            "status": row.status,
            "lead_key": row.lead_key,
            "received_at": row.received_at.isoformat(),
        },
        "quarantine": None
        if q is None
        else {
            "reason": q.reason,
            "field": q.field,
            "message": q.message,
            "fix": q.fix,
            "at": q.at.isoformat(),
        },
    }


def list_quarantine(conn: Connection, reason: str | None = None) -> list[dict[str, Any]]:
    stmt = (
        select(quarantine, raw_leads.c.source)
        .join(raw_leads, raw_leads.c.id == quarantine.c.raw_lead_id)
        .order_by(quarantine.c.id)
    )
    if reason:
        stmt = stmt.where(quarantine.c.reason == reason)
    return [
        {
            "raw_lead_id": r.raw_lead_id,
            "source": r.source,
            "reason": r.reason,
            "field": r.field,
            "message": r.message,
            "fix": r.fix,
            "at": r.at.isoformat(),
        }
        for r in conn.execute(stmt)
    ]


def status(
    conn: Connection,
    source_names: list[str],
    target_names: list[str],
    silent_after: timedelta = timedelta(seconds=30),
) -> dict[str, Any]:
    """Everything `leadbridge status` shows; a replica silent for `silent_after` is lost."""
    cursor_rows = {row.name: row for row in repo.all_cursors(conn)}
    sources = {}
    for name in source_names:
        row = cursor_rows.get(f"source:{name}")
        sources[name] = {
            "cursor": row.value if row else None,
            "updated_at": row.updated_at.isoformat() if row else None,
            "raw_leads": int(
                conn.execute(
                    select(func.count()).select_from(raw_leads).where(raw_leads.c.source == name)
                ).scalar_one()
            ),
        }
    last_test = cursor_rows.get(LAST_TEST_LEAD)
    outbox = repo.outbox_depth(conn)
    dead = repo.open_dead_letters(conn)
    return {
        "sources": sources,
        "raw_leads": repo.count_by(conn, raw_leads.c.status),
        "quarantine": repo.count_by(conn, quarantine.c.reason),
        "last_test_lead_at": last_test.value if last_test else None,
        "leads": {
            "total": int(conn.execute(select(func.count()).select_from(leads)).scalar_one()),
            "by_stage": repo.count_by(conn, leads.c.stage),
        },
        "events": int(conn.execute(select(func.count()).select_from(events)).scalar_one()),
        "targets": {
            name: {
                "outbox": outbox.get(name, 0),
                "dead_letters": dead.get(name, 0),
                "health": target_health(conn, name),
            }
            for name in target_names
        },
        "replicas": replica_rows(conn, utcnow(), silent_after),
        "queue": runs.queue_depth(conn),
        "jobs": {
            job: {
                "replica": run.replica,
                "trigger": run.trigger,
                "started_at": run.started_at.isoformat(),
                "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                "outcome": run.outcome,
            }
            for job, run in runs.last_runs(conn).items()
        },
    }


def replica_rows(conn: Connection, now: datetime, silent_after: timedelta) -> list[dict[str, Any]]:
    """Each `leadbridge run` process: up (beating), stopped (said goodbye), or lost (silent:
    killed, or its node gone — in cluster mode its jobs run again elsewhere)."""
    out = []
    for row in runs.list_replicas(conn):
        state = runs.replica_state(row, now, silent_after)
        out.append(
            {
                "name": row.name,
                "engine": row.engine,
                "state": state,
                "started_at": row.started_at.isoformat(),
                "heartbeat_at": row.heartbeat_at.isoformat(),
                "doing": list(row.doing) if state == "up" else [],
            }
        )
    return out


def masked_row(row: dict[str, Any]) -> dict[str, Any]:
    """A lead summary fit for a shared terminal: the email masked."""
    out = dict(row)
    out["email"] = mask_email(row.get("email"))
    return out


def dead_letter_rows(
    conn: Connection, target: str | None = None, include_resolved: bool = False
) -> list[dict[str, Any]]:
    stmt = select(dead_letters).order_by(dead_letters.c.id)
    if target:
        stmt = stmt.where(dead_letters.c.target == target)
    if not include_resolved:
        stmt = stmt.where(dead_letters.c.resolved_at.is_(None))
    return [_dead_letter(row) for row in conn.execute(stmt)]


def dead_letter(conn: Connection, letter_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(dead_letters).where(dead_letters.c.id == letter_id)).first()
    return _dead_letter(row) if row else None


def _dead_letter(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "lead_key": row.lead_key,
        "target": row.target,
        "error_class": row.error_class,
        "error": row.error,
        "body": row.body,
        "created_at": row.created_at.isoformat(),
        "resolved_at": row.resolved_at.isoformat() if row.resolved_at else None,
        "resolution": row.resolution,
    }


def target_health(conn: Connection, name: str) -> dict[str, Any]:
    value = repo.get_cursor(conn, f"target:{name}:health")
    return orjson.loads(value) if value else {"state": "unknown"}
