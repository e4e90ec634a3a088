"""The funnel and SQL report, computed from leadbridge's own history (events), so it holds
whatever CRM the stages came from.

Definitions (docs/reports.md has them with examples):
- A period is [start, end) in UTC. Counts are distinct leads.
- Raw leads, and among them test leads and invalid-email leads (quarantined: no usable
  email, so never a lead): by when the customer acted, else when the raw lead arrived.
- MQL, SQL, opportunity, customer, disqualified: leads that entered the stage in the period.
  Recycled: leads sent back to nurture (lead/subscriber) from MQL or beyond in the period.
- Acceptance rate: of the leads that became MQL in the period (the cohort), the share that
  reached SQL or beyond afterwards (up to now). No MQLs: not available, never a division by 0.
- Velocity: days from a cohort lead's first MQL entry in the period to its first SQL-or-beyond
  entry after it; mean, median and p90 (linear interpolation between closest ranks).
- Follow-up SLA: Contact-me (PLT) leads whose first PLT action is in the period, touched by
  sales — any stage change (accepted or refused) made in a CRM, not by leadbridge — within
  the threshold. A lead is a breach only once its window is over without a touch in it
  (touched late, or not at all); a lead still inside its window and not touched yet is
  open — due, not late. Share: within / (within + breaches); every breach and every open
  lead is listed with who it is (name, company, masked email, offer, asked at, due by).
- Cost per SQL: spend dated in the period / SQLs in the period; lagged: spend shifted back by
  the mean MQL → SQL time in whole days, so the money that made the leads is the money
  counted.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, func, select, union
from sqlalchemy.sql import ColumnElement

from leadbridge.core.domain.models import Stage, lead_from_json
from leadbridge.core.domain.stages import rank
from leadbridge.core.store.dialect import in_chunks
from leadbridge.core.store.tables import events, leads, quarantine, raw_leads
from leadbridge.core.support.logs import mask_email

SALES_OR_BEYOND = rank(Stage.SQL)
NURTURE = {Stage.LEAD.value, Stage.SUBSCRIBER.value}
GROUPINGS = ("offer", "source", "action", "target", "grade")
UNGRADED = "ungraded"  # a lead scored as one number (no fit × engagement configured)
# Quarantine reasons the funnel counts among raw leads: Microsoft's test leads, and leads
# without a usable email (never a lead, never delivered).
_COUNTED_REASONS = ("test", "invalid_email")
# The events a lead's history is made of: its actions, and stage changes made or refused.
_HISTORY_KINDS = ("action", "stage", "stage_refused")


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime  # exclusive
    label: str

    def __contains__(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def period_for(kind: str, at: date) -> Period:
    """The month, quarter, half or year that contains `at`."""
    first_month = {
        "month": at.month,
        "quarter": 3 * ((at.month - 1) // 3) + 1,
        "half": 1 if at.month <= 6 else 7,
        "year": 1,
    }[kind]
    months = {"month": 1, "quarter": 3, "half": 6, "year": 12}[kind]
    start = datetime(at.year, first_month, 1, tzinfo=UTC)
    end_month = first_month + months
    end = datetime(at.year + (end_month - 1) // 12, (end_month - 1) % 12 + 1, 1, tzinfo=UTC)
    label = {
        "month": f"{at.year}-{first_month:02d}",
        "quarter": f"{at.year}-Q{(first_month + 2) // 3}",
        "half": f"{at.year}-H{1 if first_month == 1 else 2}",
        "year": str(at.year),
    }[kind]
    return Period(start, end, label)


def period_between(start: date, end_inclusive: date) -> Period:
    begin = datetime(start.year, start.month, start.day, tzinfo=UTC)
    end = datetime(
        end_inclusive.year, end_inclusive.month, end_inclusive.day, tzinfo=UTC
    ) + timedelta(days=1)
    return Period(begin, end, f"{start.isoformat()}..{end_inclusive.isoformat()}")


@dataclass(frozen=True)
class Spend:
    day: date
    amount: Decimal
    offer: str | None


class SpendFileError(ValueError):
    pass


def read_spend(path: Path) -> list[Spend]:
    """CSV with a header: date (YYYY-MM-DD), amount, and optionally offer."""
    rows: list[Spend] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = {h.strip().lower(): h for h in reader.fieldnames or []}
        if "date" not in header or "amount" not in header:
            raise SpendFileError(
                f"{path}: the header needs `date` and `amount` columns (and optionally `offer`)"
            )
        for line, row in enumerate(reader, start=2):
            try:
                day = date.fromisoformat(row[header["date"]].strip())
            except ValueError:
                raise SpendFileError(
                    f"{path}:{line}: date {row[header['date']]!r} is not YYYY-MM-DD"
                ) from None
            try:
                amount = Decimal(row[header["amount"]].strip())
            except InvalidOperation:
                raise SpendFileError(
                    f"{path}:{line}: amount {row[header['amount']]!r} is not a number"
                ) from None
            offer = (row.get(header.get("offer", ""), "") or "").strip() or None
            rows.append(Spend(day, amount, offer))
    return rows


# --- the history, per lead ----------------------------------------------------------------


@dataclass
class LeadHistory:
    key: str
    email: str | None
    groups: dict[str, str]
    first_seen: datetime | None
    do_not_contact: bool
    who: dict[str, str | None] = field(default_factory=dict)  # name, company, offer: SLA lists
    actions: list[tuple[datetime, str]] = field(default_factory=list)
    stages: list[tuple[datetime, str, str, str]] = field(
        default_factory=list
    )  # at, from, to, actor
    touches: list[datetime] = field(default_factory=list)  # stage decisions made in a CRM
    graded_at_mql: bool = False  # groups["grade"] is the grade it had on becoming an MQL

    def entered(self, stage: str, period: Period) -> list[datetime]:
        return [at for at, _, to, _ in self.stages if to == stage and at in period]


def active_lead_keys(conn: Connection, period: Period) -> set[str]:
    """The leads the period's figures can count: first seen in it, with an action or a
    stage change in it, or a raw lead in it.

    Every figure (the module's docstring) is about one of these, so the report reads their
    histories — whole: velocity looks past the period's end, the SLA back before its start —
    and nobody else's. A month of a store that holds years of backfill is that month's
    leads, not the million: the daemon's follow-up alerts and daily digest, and the
    console's funnel page, run this on a schedule or a click.
    """
    keys = union(
        select(leads.c.lead_key).where(_within(leads.c.first_seen, period)),
        select(events.c.lead_key).where(
            events.c.kind.in_(_HISTORY_KINDS), _within(events.c.at, period)
        ),
        select(raw_leads.c.lead_key).where(
            raw_leads.c.lead_key.is_not(None), _within(_acted_at(), period)
        ),
    )
    return set(conn.execute(keys).scalars())


def _acted_at() -> ColumnElement[Any]:
    """When a raw lead's customer acted, else when it arrived: the moment it counts at."""
    return func.coalesce(raw_leads.c.occurred_at, raw_leads.c.received_at)


def _within(moment: ColumnElement[Any], period: Period) -> ColumnElement[bool]:
    """`moment in period`, in SQL."""
    return and_(moment >= period.start, moment < period.end)


def load_histories(conn: Connection, keys: Iterable[str]) -> dict[str, LeadHistory]:
    """The histories of the leads `keys`, each from its first event on."""
    histories: dict[str, LeadHistory] = {}
    for clause in in_chunks(conn, leads.c.lead_key, keys):
        for row in conn.execute(select(leads.c.lead_key, leads.c.data).where(clause)):
            histories[row.lead_key] = _history_of(row.data)
    # Each lead's events are in one statement (a chunk holds a lead's key or not), in the
    # order they happened: that order is all `_add_event` needs.
    stmt = select(events.c.lead_key, events.c.kind, events.c.actor, events.c.at, events.c.data)
    stmt = stmt.where(events.c.kind.in_(_HISTORY_KINDS)).order_by(events.c.at, events.c.id)
    for clause in in_chunks(conn, events.c.lead_key, histories):
        for event in conn.execute(stmt.where(clause)):
            _add_event(histories[event.lead_key], event)
    return histories


def _history_of(data: str) -> LeadHistory:
    """A lead's history as far as its stored record tells: who, and the groups it is in."""
    lead = lead_from_json(data)
    return LeadHistory(
        key=lead.lead_key,
        email=lead.email,
        first_seen=lead.first_seen,
        do_not_contact=lead.do_not_contact,
        who={
            "name": " ".join(n for n in (lead.first_name, lead.last_name) if n) or None,
            "company": lead.company,
            "email": mask_email(lead.email) or None,  # a report is shared: masked
            "offer": lead.offer_key,
            "offer_title": lead.offer_title,
        },
        groups={
            "offer": lead.offer_key,
            "source": lead.channel or "unknown",
            "action": lead.first_action or "unknown",
            "target": "not accepted",
            "grade": lead.grade or UNGRADED,
        },
    )


def _add_event(history: LeadHistory, event: Any) -> None:
    """One more event of the lead's history, in the order they happened."""
    if event.kind == "action":
        history.actions.append((event.at, str(event.data.get("action"))))
        return
    if event.actor != "leadbridge":
        history.touches.append(event.at)
    if event.kind == "stage":
        history.stages.append((event.at, event.data.get("from"), event.data.get("to"), event.actor))
        _grade_at_mql(history, event.data)
        if (
            history.groups["target"] == "not accepted"
            and event.actor != "leadbridge"
            and _accepted(event.data.get("to"))
        ):
            history.groups["target"] = event.actor


def _grade_at_mql(history: LeadHistory, data: dict[str, Any]) -> None:
    """A lead is grouped by the grade it had when it first became an MQL: acceptance per
    grade is what tells marketing whether the grid (`mql_when`) is right. (A lead that
    never became one keeps its current grade.)"""
    if data.get("to") == Stage.MQL.value and data.get("grade") and not history.graded_at_mql:
        history.groups["grade"] = str(data["grade"])
        history.graded_at_mql = True


def _accepted(stage: str | None) -> bool:
    return (
        stage is not None and stage != Stage.DISQUALIFIED.value and rank(stage) >= SALES_OR_BEYOND
    )


# --- the figures --------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 1]."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _velocity(cohort: Iterable[LeadHistory], period: Period) -> tuple[int, list[float]]:
    """(leads accepted, days from first MQL in the period to the first SQL-or-beyond after)."""
    days = []
    for history in cohort:
        mql_at = min(history.entered("mql", period))
        accepted = [at for at, _, to, _ in history.stages if at >= mql_at and _accepted(to)]
        if accepted:
            days.append((min(accepted) - mql_at).total_seconds() / 86400)
    return len(days), days


def _sla(
    histories: Iterable[LeadHistory], period: Period, hours: float, now: datetime
) -> dict[str, Any]:
    """Contact-me follow-up as of `now`: within (touched inside the window), breach (the
    window is over and it was touched late or not at all), open (inside the window, not
    touched yet: nobody is late). Touches after `now` are not known yet."""
    window = timedelta(hours=hours)
    contact_me, within, breaches, open_ = 0, 0, [], []
    for history in histories:
        asked = [at for at, action in history.actions if action == "PLT"]
        if not asked or min(asked) not in period:
            continue
        contact_me += 1
        start = min(asked)
        due = start + window
        touched = [at for at in history.touches if start <= at <= now]
        first = min(touched) if touched else None
        who: dict[str, object] = {"lead_key": history.key, **history.who}
        when = {"asked_at": start.isoformat(), "due_by": due.isoformat()}
        if first is not None and first <= due:
            within += 1
        elif first is None and now < due:
            left = round((due - now).total_seconds() / 3600, 2)
            open_.append(who | when | {"hours_left": left})
        else:
            breaches.append(
                who
                | when
                | {
                    "first_touch_at": first.isoformat() if first else None,
                    "hours": round((first - start).total_seconds() / 3600, 2) if first else None,
                }
            )
    return {
        "threshold_hours": hours,
        "contact_me": contact_me,
        "within": within,
        "share": _ratio(within, within + len(breaches)),
        "breaches": breaches,
        "open": open_,
    }


FOLLOW_UP_COLUMNS = (
    "status",
    "name",
    "company",
    "email",
    "offer",
    "asked_at",
    "due_by",
    "first_touch_at",
    "hours",
    "hours_left",
    "lead_key",
)


def follow_up_rows(sla: dict[str, Any]) -> list[dict[str, Any]]:
    """The Contact-me leads someone has to act on, breaches first then open ones by due
    time: one row shape for the table, the CSV and the HTML page."""
    late = [{"status": "breach", **b} for b in sla["breaches"]]
    due = sorted(sla["open"], key=lambda o: o["due_by"])
    return late + [{"status": "open", **o} for o in due]


def _cost(
    spend: list[Spend] | None,
    group: str | None,
    by: str | None,
    sqls: int,
    period: Period,
    lag_days: int | None,
) -> dict[str, Any] | None:
    if spend is None:
        return None
    rows = [s for s in spend if by != "offer" or group is None or s.offer == group]

    def total(start: datetime, end: datetime) -> Decimal:
        return sum((s.amount for s in rows if start.date() <= s.day < end.date()), Decimal(0))

    simple = total(period.start, period.end)
    lag = timedelta(days=lag_days or 0)
    lagged = total(period.start - lag, period.end - lag) if lag_days is not None else None
    return {
        "spend": str(simple),
        "sqls": sqls,
        "per_sql": _money(simple, sqls),
        "lag_days": lag_days,
        "lagged_spend": str(lagged) if lagged is not None else None,
        "lagged_per_sql": _money(lagged, sqls) if lagged is not None else None,
    }


def _money(amount: Decimal | None, count: int) -> str | None:
    if amount is None or count == 0:
        return None
    return str((amount / count).quantize(Decimal("0.01")))


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _weekly(histories: Iterable[LeadHistory], period: Period) -> list[dict[str, Any]]:
    weeks: dict[date, dict[str, int]] = defaultdict(lambda: {"mql": 0, "sql": 0})
    monday = (period.start - timedelta(days=period.start.weekday())).date()
    while monday < period.end.date():
        weeks[monday]  # every week of the period appears, quiet ones too
        monday += timedelta(days=7)
    for history in histories:
        for stage in ("mql", "sql"):
            for at in history.entered(stage, period):
                weeks[(at - timedelta(days=at.weekday())).date()][stage] += 1
    return [{"week": week.isoformat(), **counts} for week, counts in sorted(weeks.items())]


def _figures(
    histories: list[LeadHistory],
    counts: dict[str, int],
    period: Period,
    sla_hours: float,
    now: datetime,
) -> dict[str, Any]:
    def entered(stage: str) -> list[LeadHistory]:
        return [h for h in histories if h.entered(stage, period)]

    cohort = entered("mql")
    accepted, days = _velocity(cohort, period)
    recycled = [
        h
        for h in histories
        if any(
            at in period
            and to in NURTURE
            and frm is not None
            and frm not in NURTURE
            and frm != Stage.DISQUALIFIED.value
            for at, frm, to, _ in h.stages
        )
    ]
    return {
        "raw_leads": counts.get("raw", 0),
        "unique_leads": sum(1 for h in histories if h.first_seen and h.first_seen in period),
        "test_leads": counts.get("test", 0),
        "invalid_email_leads": counts.get("invalid_email", 0),
        "dnc_leads": sum(
            1 for h in histories if h.do_not_contact and h.first_seen and h.first_seen in period
        ),
        "stages": {
            "mql": len(cohort),
            "sql": len(entered("sql")),
            "opportunity": len(entered("opportunity")),
            "customer": len(entered("customer")),
            "recycled": len(recycled),
            "disqualified": len(entered("disqualified")),
        },
        "acceptance": {
            "mql": len(cohort),
            "accepted": accepted,
            "rate": _ratio(accepted, len(cohort)),
        },
        "velocity_days": {
            "count": len(days),
            "mean": round(statistics.fmean(days), 4) if days else None,
            "median": round(statistics.median(days), 4) if days else None,
            "p90": round(percentile(days, 0.9), 4) if days else None,
            "values": [round(d, 4) for d in sorted(days)],
        },
        "sla": _sla(histories, period, sla_hours, now),
        "weekly": _weekly(histories, period),
    }


def _raw_counts(
    conn: Connection, period: Period, histories: dict[str, LeadHistory], by: str | None
) -> dict[str | None, dict[str, int]]:
    counts: dict[str | None, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    stmt = (
        select(raw_leads.c.lead_key, quarantine.c.reason)
        .join(quarantine, quarantine.c.raw_lead_id == raw_leads.c.id, isouter=True)
        .where(_within(_acted_at(), period))
    )
    for row in conn.execute(stmt):
        history = histories.get(row.lead_key) if row.lead_key else None
        group = history.groups[by] if (by and history) else None
        for key in {None, group}:
            counts[key]["raw"] += 1
            if row.reason in _COUNTED_REASONS:
                counts[key][row.reason] += 1
    return counts


def funnel(
    conn: Connection,
    period: Period,
    *,
    by: str | None = None,
    spend: list[Spend] | None = None,
    sla_hours: float = 24.0,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The report: a total and, with `by`, one entry per group. Stable JSON (docs/reports.md).
    `now` (default: the clock) is when the follow-up SLA is judged: a Contact-me lead is only
    late once its window has passed."""
    now = now or datetime.now(UTC)
    histories = load_histories(conn, active_lead_keys(conn, period))
    counts = _raw_counts(conn, period, histories, by)
    everyone = list(histories.values())
    total = _figures(everyone, counts[None], period, sla_hours, now)
    lag = (
        round(total["velocity_days"]["mean"])
        if total["velocity_days"]["mean"] is not None
        else None
    )
    total["cost"] = _cost(spend, None, by, total["stages"]["sql"], period, lag)
    groups = []
    if by:
        for name in _group_names(by, everyone, counts, spend):
            members = [h for h in everyone if h.groups[by] == name]
            figures = _figures(members, counts.get(name, {}), period, sla_hours, now)
            figures["cost"] = _cost(spend, name, by, figures["stages"]["sql"], period, lag)
            groups.append({"group": name, **figures})
    return {
        "period": {
            "label": period.label,
            "start": period.start.isoformat(),
            "end": period.end.isoformat(),
        },
        "by": by,
        "as_of": now.isoformat(),
        "total": total,
        "groups": groups,
    }


def _group_names(
    by: str,
    histories: Iterable[LeadHistory],
    counts: dict[str | None, dict[str, int]],
    spend: list[Spend] | None,
) -> list[str]:
    """The groups of the leads the period's report read (`active_lead_keys`) and of its raw
    leads; by offer, also every offer the spend file names — money spent on an offer that
    brought no lead in the period is what cost per SQL is there to show. A group none of
    the period's leads is in has nothing to report, and is left out."""
    names = {h.groups[by] for h in histories} | {g for g in counts if g}
    if by == "offer":
        names |= {row.offer for row in spend or [] if row.offer}
    return sorted(names)


def minute(moment: str | None) -> str:
    """An ISO timestamp as a person reads a due time: `2026-05-20 11:58 UTC` (empty: never)."""
    if not moment:
        return ""
    return datetime.fromisoformat(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
