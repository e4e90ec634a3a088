"""The console's own reads of the store, beyond what `leadbridge status` shows: each target's
last successful push and its last hour, and the leads search.

Everything comes from the store, not from a process's memory or Prometheus counters, so
every replica shows the same numbers. What the store records per push is one `push` event
per outcome (core/delivery/deliver.py): a success (`ok`), or a dead letter (`error`); retried
attempts leave no event, so the hour counts pushes and failures, not HTTP calls.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, ColumnElement, Connection, case, cast, func, select, type_coerce

from leadbridge.core.app import views
from leadbridge.core.domain.models import lead_from_json
from leadbridge.core.store import state
from leadbridge.core.store.tables import events, leads

PAGE_ROWS = 200  # a page never lists more: filters narrow it
HOUR = timedelta(hours=1)
# How far back "last success" looks. The query walks ix_events_kind_at from the newest push
# backwards and stops at the target's first success, so a healthy target costs one step; a
# target without a success walks every push of this window, so it is bounded.
SUCCESS_LOOKBACK = timedelta(days=7)
COMPANY_MAX = 200  # a search term longer than any company name is a mistake


def target_activity(conn: Connection, names: list[str], now: datetime) -> dict[str, dict[str, Any]]:
    """Per target: `last_success` (None: none within SUCCESS_LOOKBACK), the last hour's
    `pushed` (landed) and `failed` (dead-lettered) pushes, and the API calls and error
    answers of this clock hour and the one before (`calls`: {"this": {calls, errors},
    "previous": {…}}), as the delivery runs of every replica counted them in the store."""
    hour = _last_hour(conn, names, now)
    return {
        name: {
            "last_success": _last_success(conn, name, now),
            **hour.get(name, {"pushed": 0, "failed": 0}),
            "calls": state.calls_by_hour(conn, name, now),
        }
        for name in names
    }


def _ok() -> ColumnElement[bool]:
    ok: ColumnElement[bool] = events.c.data["ok"].as_boolean()
    return ok


def _last_hour(conn: Connection, names: list[str], now: datetime) -> dict[str, dict[str, int]]:
    """One range scan of ix_events_kind_at over the last hour's pushes, grouped by target."""
    failed = events.c.data["error"].as_string().is_not(None)
    stmt = (
        select(
            events.c.actor,
            func.sum(case((_ok(), 1), else_=0)),
            func.sum(case((failed, 1), else_=0)),
        )
        .where(events.c.kind == "push", events.c.at >= now - HOUR, events.c.actor.in_(names))
        .group_by(events.c.actor)
    )
    return {
        actor: {"pushed": int(pushed or 0), "failed": int(fails or 0)}
        for actor, pushed, fails in conn.execute(stmt)
    }


def _last_success(conn: Connection, name: str, now: datetime) -> datetime | None:
    stmt = (
        select(events.c.at)
        .where(
            events.c.kind == "push",
            events.c.at >= now - SUCCESS_LOOKBACK,
            events.c.actor == name,
            _ok(),
        )
        .order_by(events.c.at.desc())
        .limit(1)
    )
    return conn.execute(stmt).scalar_one_or_none()


def _company_matches(conn: Connection, term: str) -> ColumnElement[bool]:
    """Any part of the lead's company, any case, `%` and `_` literal: read from the lead's
    JSON (`leads.data` is text; SQLite's json_extract reads it as it is, PostgreSQL needs
    the cast). Parsing every lead's JSON is the cost, so a plain LIKE over the text goes
    first and the JSON is parsed only for leads whose text holds the term somewhere — true
    whenever the company holds it, as JSON writes such a term verbatim."""
    data: ColumnElement[Any]
    if conn.dialect.name == "postgresql":
        data = cast(leads.c.data, JSON)
    else:
        data = type_coerce(leads.c.data, JSON)
    company: ColumnElement[str] = data["company"].as_string()
    exact = company.icontains(term, autoescape=True)
    if any(c in term for c in '"\\') or any(ord(c) < 0x20 for c in term):
        return exact  # JSON escapes these: the text would not hold the term as typed
    pattern = "%" + term.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"
    # SQLite's LIKE already ignores ASCII case (as its lower() does); PostgreSQL's ILIKE
    rough = (
        leads.c.data.ilike(pattern, escape="/")
        if conn.dialect.name == "postgresql"
        else leads.c.data.like(pattern, escape="/")
    )
    return rough & exact


def search_leads(
    conn: Connection, *, email: str = "", offer: str = "", stage: str = "", company: str = ""
) -> list[dict[str, Any]]:
    """Leads by email, offer and stage (each an indexed column) and company (a part of the
    name, any case, `%` and `_` taken literally: no column of its own, so read from the
    JSON of the leads the other filters leave); the newest PAGE_ROWS."""
    stmt = select(leads.c.data).order_by(leads.c.last_seen.desc()).limit(PAGE_ROWS)
    if email:
        stmt = stmt.where(leads.c.email == email)
    if offer:
        stmt = stmt.where(leads.c.offer_key == offer)
    if stage:
        stmt = stmt.where(leads.c.stage == stage)
    if company:
        stmt = stmt.where(_company_matches(conn, company[:COMPANY_MAX]))
    return [views.lead_summary(lead_from_json(row.data)) for row in conn.execute(stmt)]
