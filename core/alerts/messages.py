"""What each alert says: a title and a Markdown body, made when it is sent.

A queued alert holds facts without personal data (a lead key, a stage, a target); the
person's name, company and email are read from the store when the message is made, so an
erased person (`leads forget`) is never named by an alert still in the outbox, and `pii:
false` leaves them out altogether. Record links are made at the same moment, for every CRM
that had confirmed the lead by then.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from leadbridge.core.domain.alerting import AlertEvent
from leadbridge.core.domain.models import Lead

# (target, external id) → the record's page in that CRM, when the connector can say.
RecordUrl = Callable[[str, str], str | None]
SUMMARY_LINES = 10  # per event in a grouped message; the rest are counted


@dataclass(frozen=True)
class Message:
    title: str
    body: str


@dataclass(frozen=True)
class LeadView:
    """A lead as an alert shows it: the lead (None when erased or gone) and its records."""

    lead: Lead | None
    links: Sequence[tuple[str, str | None]]  # (target, record URL or None)


def render(event: str, data: dict[str, Any], view: LeadView | None, pii: bool) -> Message:
    """The message for one alert."""
    if event in (AlertEvent.HOT_LEAD, AlertEvent.SLA_AT_RISK, AlertEvent.SLA_BREACHED):
        return _lead_message(AlertEvent(event), data, view, pii)
    if event == AlertEvent.TARGET_DOWN:
        return Message(
            f"Target down: {data['target']}",
            f"**{data['target']}** has been down since {data['since']}: {data.get('why') or ''}"
            "\n\nLeads stay queued and are delivered when it is back.",
        )
    if event == AlertEvent.TARGET_RECOVERED:
        return Message(
            f"Target recovered: {data['target']}",
            f"**{data['target']}** is delivering again (down since {data['since']}, "
            f"{data.get('down_for', '?')}).",
        )
    if event == AlertEvent.DEAD_LETTERS:
        return _dead_letters(data)
    if event == AlertEvent.DIGEST:
        return _digest(data)
    return Message("leadbridge", str(data.get("text", "")))


def summary(items: Sequence[tuple[str, Message]]) -> Message:
    """Many alerts in one window for one channel: one message that counts them by event and
    lists the first few of each (a backfill or a flood is one message, not a storm)."""
    counts = Counter(event for event, _ in items)
    lines = [f"**{len(items)} alerts** arrived together:"]
    for event, count in counts.most_common():
        lines.append(f"\n**{_EVENT_NAMES.get(event, event)}: {count}**")
        shown = [m.title for e, m in items if e == event][:SUMMARY_LINES]
        lines.extend(f"- {title}" for title in shown)
        if count > len(shown):
            lines.append(f"- … and {count - len(shown)} more")
    return Message(f"leadbridge: {len(items)} alerts", "\n".join(lines))


_EVENT_NAMES: dict[str, str] = {
    AlertEvent.HOT_LEAD: "Hot leads",
    AlertEvent.SLA_AT_RISK: "Follow-ups due soon",
    AlertEvent.SLA_BREACHED: "Follow-ups overdue",
    AlertEvent.TARGET_DOWN: "Targets down",
    AlertEvent.TARGET_RECOVERED: "Targets recovered",
    AlertEvent.DEAD_LETTERS: "Dead letters",
    AlertEvent.DIGEST: "Digest",
}


def _lead_message(
    event: AlertEvent, data: dict[str, Any], view: LeadView | None, pii: bool
) -> Message:
    lead = view.lead if view else None
    offer = (lead.offer_title or lead.offer_key) if lead else data.get("offer", "")
    who = _who(lead, pii)
    if event is AlertEvent.HOT_LEAD:
        why = "asked to be contacted" if data.get("reason") == "contact_me" else "became an MQL"
        title = f"Hot lead: {who} — {offer}"
        head = f"**{who}** {why} ({offer})."
    elif event is AlertEvent.SLA_AT_RISK:
        title = f"Follow-up due: {who} — {offer}"
        head = f"**{who}** asked to be contacted; the follow-up is due by {data['due_by']}."
    else:
        title = f"Follow-up overdue: {who} — {offer}"
        head = f"**{who}** asked to be contacted; the follow-up was due by {data['due_by']}."
    lines = [head, ""]
    if lead is None:
        lines.append("(the lead is no longer in leadbridge)")
    else:
        lines += _facts(lead, data, pii)
    for target, url in view.links if view else ():
        lines.append(f"- {target}: {f'[open the record]({url})' if url else 'delivered'}")
    return Message(title, "\n".join(lines))


def _who(lead: Lead | None, pii: bool) -> str:
    if lead is None:
        return "a lead"
    name = " ".join(p for p in (lead.first_name, lead.last_name) if p)
    if pii and name:
        return f"{name}, {lead.company}" if lead.company else name
    return lead.company or "a lead"


def _facts(lead: Lead, data: dict[str, Any], pii: bool) -> list[str]:
    facts = [
        ("Company", lead.company),
        ("Title", lead.title if pii else None),
        ("Email", lead.email if pii else None),
        ("Country", lead.country),
        ("Offer", lead.offer_key),
        ("Action", lead.last_action),
        ("Stage", str(data.get("stage") or lead.stage)),
        ("Score", str(lead.score)),
        ("Rules", ", ".join(lead.score_rules) if lead.score_rules else None),
        ("Lead key", lead.lead_key),
    ]
    return [f"- {name}: {value}" for name, value in facts if value]


def _dead_letters(data: dict[str, Any]) -> Message:
    target, count = data["target"], data["count"]
    lines = [f"**{target}** refused {count} lead(s) for good; `leadbridge dlq list` shows them."]
    lines += [f"- {r['count']} × {r['error_class']}: {r['error']}" for r in data["reasons"]]
    return Message(f"Dead letters: {count} for {target}", "\n".join(lines))


def _digest(data: dict[str, Any]) -> Message:
    rate = data.get("acceptance_rate")
    lines = [
        f"**{data['day']}** ({data['timezone']})",
        f"- New leads: {data['new_leads']}",
        f"- MQLs: {data['mql']}",
        f"- SQLs: {data['sql']}",
        f"- Acceptance rate: {'n/a' if rate is None else f'{rate:.0%}'}",
        f"- Follow-up SLA breaches: {data['sla_breaches']}",
    ]
    for target, health in sorted(data.get("targets", {}).items()):
        lines.append(f"- {target}: {health}")
    return Message(f"leadbridge daily digest: {data['day']}", "\n".join(lines))
