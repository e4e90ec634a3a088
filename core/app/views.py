"""Read models for the CLI: leads, one lead's story, and the operator's status page.

Every function returns plain JSON-ready data; the shapes are the documented, stable
`--format json` output (docs/cli-json.md). Add keys freely; never rename or remove one.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from typing import Any, TypedDict, Unpack

from sqlalchemy import Connection, select

from leadbridge.core.domain.models import Lead, lead_from_json, lead_to_dict
from leadbridge.core.ingest.pipeline import IngestReport
from leadbridge.core.store import repo
from leadbridge.core.store.tables import dead_letters, leads, quarantine, raw_leads
from leadbridge.core.support.logs import mask_email

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
    "grade",  # fit × engagement (docs/scoring.md): null unless configured
    "fit",
    "engagement",
)


def lead_summary(lead: Lead) -> dict[str, Any]:
    data = lead_to_dict(lead)
    return {name: data.get(name) for name in LEAD_COLUMNS}


# Rows fetched at a time while leads are listed: memory stays flat however many there are.
LIST_PAGE = 1000


class LeadFilter(TypedDict, total=False):
    """What `leads list` is narrowed by; a filter left out, or None, lets every lead through."""

    stage: str | None
    offer: str | None
    limit: int | None
    grade: str | None


def list_leads(conn: Connection, **chosen: Unpack[LeadFilter]) -> list[dict[str, Any]]:
    """Every lead `iter_leads` yields, in one list: for a table, which needs them all."""
    return list(iter_leads(conn, **chosen))


def iter_leads(
    conn: Connection,
    stage: str | None = None,
    offer: str | None = None,
    limit: int | None = None,
    grade: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Lead summaries, oldest first, read from the store as they are yielded, so `leads
    list --format csv` over a million leads holds a page of them, not all: PostgreSQL reads
    through a server-side cursor (psycopg's default cursor fetches the whole result), SQLite
    steps through its rows. `conn` must stay open until the last one.

    `grade`: a grid cell ("A1"), or a fit grade ("A": every A)."""
    stmt = select(leads.c.data).order_by(leads.c.first_seen, leads.c.lead_key)
    if stage:
        stmt = stmt.where(leads.c.stage == stage.lower())
    if offer:
        stmt = stmt.where(leads.c.offer_key == offer)
    if grade:
        grade = grade.upper()
        stmt = stmt.where(
            leads.c.grade == grade if len(grade) == 2 else leads.c.grade.like(f"{grade}_")
        )
    if limit:
        stmt = stmt.limit(limit)
    # On the statement, not the connection: Connection.execution_options changes the
    # connection itself, and every later select on it would open a cursor of its own.
    paged = stmt.execution_options(stream_results=True, yield_per=LIST_PAGE)
    with conn.execute(paged) as rows:
        for row in rows:
            yield lead_summary(lead_from_json(row.data))


def offer_keys(conn: Connection) -> list[str]:
    """Every offer some lead is for, sorted: the values `leads list --offer` accepts."""
    return list(
        conn.execute(select(leads.c.offer_key).distinct().order_by(leads.c.offer_key)).scalars()
    )


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
    parents = {
        (row.target, row.kind): row.external_id
        for row in repo.lead_record_links(conn, lead.lead_key)
    }
    links = [
        {
            "target": row.target,
            "external_id": row.external_id,
            "state": row.state,
            "pushed_stage": row.pushed_stage,
            "pushed_at": row.pushed_at.isoformat() if row.pushed_at else None,
            # the person's and company's records the lead hangs off there (issue 16)
            "contact": parents.get((row.target, "contact")),
            "account": parents.get((row.target, "account")),
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


def dead_letter_targets(conn: Connection) -> set[str]:
    """Every target that has dead letters, open or resolved."""
    return set(conn.execute(select(dead_letters.c.target).distinct()).scalars())


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


# --- what an ingest run did, per raw lead -------------------------------------------------


def ingest_buckets(report: IngestReport, test_leads: str) -> dict[str, int]:
    """Every raw lead an ingest run processed, in exactly one bucket, so the line a person
    reads adds up: a new lead; a further action merged into a lead (one already known, or
    made earlier in the same run: a person's second click); a Microsoft test lead set aside
    (`test_leads: quarantine`); or quarantined (malformed, no usable email, unprocessable).

    The pipeline counts leads, not raw leads, for the first two; the merged bucket is what
    is left, which holds because every processed raw lead is exactly one of these.
    With `test_leads: deliver` a test lead becomes a lead like any other and is in those.
    """
    tests_set_aside = report.test_leads if test_leads == "quarantine" else 0
    merged = (
        report.processed
        - report.leads_created
        - tests_set_aside
        - report.quarantined
        - report.erased
    )
    return {
        "processed": report.processed,
        "new_leads": report.leads_created,
        "merged": max(merged, 0),
        "test_leads": tests_set_aside,
        "quarantined": report.quarantined,
        "erased": report.erased,  # a forgotten person's new action, set aside as they asked
    }


def ingest_line(report: IngestReport, test_leads: str, fetched: int | None = None) -> str:
    """`13 raw leads = 10 new leads + 1 merged into a lead + 1 Microsoft test lead
    + 1 quarantined`, then what became of the leads."""
    buckets = ingest_buckets(report, test_leads)
    line = (
        f"{_count(buckets['processed'], 'raw lead')} = "
        f"{_count(buckets['new_leads'], 'new lead')} + "
        f"{buckets['merged']} merged into a lead (another action of the same person and offer)"
        f" + {_count(buckets['test_leads'], 'Microsoft test lead')} + "
        f"{buckets['quarantined']} quarantined"
    )
    if buckets["erased"]:
        line += f" + {buckets['erased']} of people who asked to be forgotten (set aside)"
    if fetched is not None and fetched != buckets["processed"]:
        line += (
            f" ({fetched} read from the sources now: a raw lead landed before, or by the "
            "webhook, is processed too; one read again is not landed twice)"
        )
    return (
        f"{line}; {_count(report.leads_updated, 'lead')} from earlier runs updated, "
        f"{_count(report.new_mqls, 'new MQL')}"
    )


def _count(count: int, noun: str) -> str:
    return f"{count} {noun if count == 1 else noun + 's'}"


# --- score rules as a person reads them ------------------------------------------------------

# How core/qualify.py writes a title rule: `title matches '<pattern>' (+10)`.
_TITLE_RULE = re.compile(
    r"^title matches (?P<pattern>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\") "
    r"\((?P<points>[+-]\d+)\)$"
)
_EDGE = "\x00"  # a word boundary (\b) while a pattern is expanded
_MORE = "…"  # \w* or \w+: the word goes on
_MAX_WORDS = 40
_SPELLING = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "-": " "})


class _Unreadable(ValueError):
    """A pattern beyond the small regex subset spelled out in words."""


def readable_rule(rule: str) -> str:
    """A score rule as a person reads it: a title rule's regex becomes the words it matches
    (`title has one of the words ceo, cto, … or director (+15)`); any other rule, or a
    pattern too rich to spell out, is returned as it is. A fit × engagement rule keeps its
    axis (`fit: title has …`)."""
    axis, sep, rest = rule.partition(": ")
    if sep and axis in ("fit", "engagement"):
        return f"{axis}: {readable_rule(rest)}"
    match = _TITLE_RULE.match(rule)
    if not match:
        return rule
    try:
        pattern = ast.literal_eval(match.group("pattern"))
        words = _title_words(pattern)
    except (ValueError, SyntaxError, IndexError):
        return rule
    return f"title {words} ({match.group('points')})"


def _title_words(pattern: str) -> str:
    flags = re.match(r"^\(\?([aiLmsux]+)\)", pattern)
    body = pattern[flags.end() :] if flags else pattern
    options, end = _alternatives(body, 0)
    if end != len(body):
        raise _Unreadable(pattern)
    starts = all(o.startswith(_EDGE) for o in options)
    ends = all(o.endswith(_EDGE) or o.endswith(_MORE + _EDGE) for o in options)
    words: dict[str, str] = {}
    for option in options:
        word = option.strip(_EDGE)
        if _EDGE in word or not word:
            raise _Unreadable(pattern)
        words.setdefault(word.lower().translate(_SPELLING), word)  # one spelling per word
    listed = _or_list(list(words.values()))
    case = "" if flags and "i" in flags.group(1) else " (case-sensitive)"
    many = len(words) > 1
    if starts and ends:
        return f"has {'one of the words' if many else 'the word'} {listed}{case}"
    if starts:
        return f"has a word starting with {listed}{case}"
    return f"contains {listed}{case}"


def _or_list(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _alternatives(text: str, i: int) -> tuple[list[str], int]:
    options: list[str] = []
    while True:
        variants, i = _sequence(text, i)
        options += variants
        if i < len(text) and text[i] == "|":
            i += 1
            continue
        return options, i


def _sequence(text: str, i: int) -> tuple[list[str], int]:
    variants = [""]
    while i < len(text) and text[i] not in "|)":
        pieces, i = _item(text, i)
        if i < len(text) and text[i] == "?":  # optional: with or without
            pieces, i = [*pieces, ""], i + 1
        if i < len(text) and text[i] in "*+{":
            raise _Unreadable(text)
        variants = [v + p for v in variants for p in pieces]
        if len(variants) > _MAX_WORDS:
            raise _Unreadable(text)
    return variants, i


def _item(text: str, i: int) -> tuple[list[str], int]:
    char = text[i]
    if char == "(":
        i += 3 if text.startswith("?:", i + 1) else 1
        if text.startswith("?", i):
            raise _Unreadable(text)  # lookarounds, named groups, …
        options, i = _alternatives(text, i)
        if i >= len(text) or text[i] != ")":
            raise _Unreadable(text)
        return options, i + 1
    if char == "[":
        end = text.find("]", i + 1)
        members = text[i + 1 : end]
        if end < 0 or not members or members[0] == "^" or "\\" in members or "-" in members[1:-1]:
            raise _Unreadable(text)
        return list(dict.fromkeys(members)), end + 1
    if char == "\\" and i + 1 < len(text):
        escaped = text[i + 1]
        if escaped == "b":
            return [_EDGE], i + 2
        if escaped == "w" and text[i + 2 : i + 3] in ("*", "+"):
            return [_MORE], i + 3
        if escaped.isalnum():
            raise _Unreadable(text)  # \d, \s, …: a class, not a letter
        return [escaped], i + 2
    if char in ".^$*+?{}\\":
        raise _Unreadable(text)
    return [char], i + 1
