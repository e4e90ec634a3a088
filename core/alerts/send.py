"""Sending the outbox through apprise, channel by channel.

For each channel: nothing while its back-off runs; else claim its due rows, make their
messages, send, and mark each row sent right after its message went. The guarantee is
**at least once**: a crash between a send and its mark leaves the row claimed; the claim
expires and the row is sent again — so a message is sent at most twice per such crash and
marked once (`mark_sent` only marks a row still pending and claimed by the marker).

Grouping: a channel gets at most `burst` messages per `window`. When more alerts are due
than the window has room for, a fresh window sends them all as one summary; a window that
already spent some of its room holds them to its end, and they go then as one summary.

A channel that fails backs off on its own (exponential from `retry_base` to `retry_max`),
and its rows wait with it; every other channel goes on. Logs and metrics name the alert id,
the channel and the event, never the person and never the channel's URL.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import apprise
from apprise import NotifyBase
from apprise.logger import NotifyLogEntry
from sqlalchemy import Connection, select, update

from leadbridge.core.alerts import outbox
from leadbridge.core.alerts.messages import LeadView, Message, RecordUrl, render, summary
from leadbridge.core.domain.alerting import AlertEvent, AlertSettings, ChannelSettings
from leadbridge.core.store import repo
from leadbridge.core.store.dialect import insert
from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.store.tables import alert_channels, target_links
from leadbridge.core.support import faults, logs, metrics
from leadbridge.core.support.whoami import replica_name

log = logging.getLogger("leadbridge.alerts")
WORKER = replica_name()
CLAIM_LIMIT = 1000  # rows one pass takes per channel; a summary covers them all


@dataclass(frozen=True)
class Answer:
    """What a channel answered: sent or not, and its words (redacted, one line)."""

    ok: bool
    text: str


# (apprise URL, message, timeout in seconds) → the channel's answer. Tests pass their own.
Notify = Callable[[str, Message, float], Answer]


@dataclass
class ChannelReport:
    channel: str
    sent: int = 0  # alerts that reached the channel (a summary counts each alert in it)
    messages: int = 0
    failed: int = 0
    deferred: int = 0
    dropped: int = 0
    backing_off_until: datetime | None = None
    error: str | None = None


@dataclass
class SendReport:
    channels: list[ChannelReport] = field(default_factory=list)

    @property
    def next_due(self) -> datetime | None:
        """When a channel's back-off or grouping window ends: the sender's next run."""
        times = [c.backing_off_until for c in self.channels if c.backing_off_until]
        return min(times) if times else None


def notify(url: str, message: Message, timeout: float) -> Answer:
    """Send one message through apprise (its 2.x result object, not a bool)."""
    sender = apprise.Apprise()
    if not sender.add(url):
        return Answer(False, "apprise cannot load this URL (unknown scheme or malformed)")
    result = sender.notify(
        body=message.body,
        title=message.title,
        body_format=apprise.NotifyFormat.MARKDOWN,
        timeout=timeout,
        log_callback=_quiet,  # captured in the result, not printed
    )
    words = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR", "CRITICAL")]
    text = "; ".join(words) if words else result.status.name.lower()
    return Answer(bool(result), logs.redact(" ".join(text.split()))[:300])


def _quiet(entry: NotifyLogEntry, plugin: NotifyBase | None) -> None:
    """apprise's words for one send are read from its result (`notify`), not logged."""


def unloadable(settings: AlertSettings) -> list[str]:
    """The channels whose URL apprise cannot load (unknown scheme, malformed). Loading them
    at start also loads apprise's plugins then (~0.3 s), not on the first hot lead."""
    return [
        c.name for c in settings.channels if not apprise.Apprise().add(c.url.get_secret_value())
    ]


def send_due(
    store: Store,
    settings: AlertSettings,
    *,
    now: datetime | None = None,
    record_url: RecordUrl | None = None,
    worker: str = WORKER,
    send: Notify = notify,
) -> SendReport:
    """One pass over every channel's due alerts."""
    now = now or utcnow()
    report = SendReport()
    with store.begin() as conn:
        stale = outbox.drop_stale(conn, now, settings.max_age)
    if stale:
        log.warning("stale alerts dropped", extra={"count": stale})
    for channel in settings.channels:
        report.channels.append(
            _send_channel(store, settings, channel, now, record_url, worker, send)
        )
    return report


def _send_channel(
    store: Store,
    settings: AlertSettings,
    channel: ChannelSettings,
    now: datetime,
    record_url: RecordUrl | None,
    worker: str,
    send: Notify,
) -> ChannelReport:
    report = ChannelReport(channel.name)
    lease = settings.timeout * 3 + timedelta(seconds=30)
    with store.begin() as conn:
        state = _channel_state(conn, channel.name)
        if state.retry_at is not None and state.retry_at > now:
            report.backing_off_until = state.retry_at
            return report
        window_start, sent_in_window = _window(state, settings, now)
        rows = outbox.claim_due(conn, channel.name, now, lease, worker, CLAIM_LIMIT)
    if not rows:
        return report
    room = settings.burst - sent_in_window
    if len(rows) > room and sent_in_window:
        window_end = window_start + settings.window
        with store.begin() as conn:
            outbox.defer(conn, [r.id for r in rows], window_end)
        report.deferred = len(rows)
        report.backing_off_until = window_end
        return report
    pii = settings.pii_for(channel)
    made = _messages(store, rows, pii, record_url)
    gone = [r.id for r, m in zip(rows, made, strict=True) if m is None]
    if gone:  # about a person erased meanwhile (`leads forget`): never sent
        with store.begin() as conn:
            outbox.drop(conn, gone)
        report.dropped = len(gone)
    rows = [r for r, m in zip(rows, made, strict=True) if m is not None]
    messages = [m for m in made if m is not None]
    if not rows:
        return report
    url = channel.url.get_secret_value()
    timeout = settings.timeout.total_seconds()
    if len(rows) > room:
        batches = [
            (list(rows), summary([(r.event, m) for r, m in zip(rows, messages, strict=True)]))
        ]
    else:
        batches = [([r], m) for r, m in zip(rows, messages, strict=True)]
    for index, (covered, message) in enumerate(batches):
        answer = send(url, message, timeout)
        faults.point("alerts.after_send")  # sent; not yet marked: the at-least-once gap
        if not answer.ok:
            left = [r for batch, _ in batches[index:] for r in batch]
            _failed(store, settings, channel.name, left, answer, now, report)
            return report
        with store.begin() as conn:
            outbox.mark_sent(conn, [r.id for r in covered], now, worker, grouped=len(covered) > 1)
            _succeeded(conn, channel.name, now, window_start, sent_in_window + index + 1)
        report.messages += 1
        report.sent += len(covered)
        for row in covered:
            metrics.ALERTS.labels(channel.name, row.event, "sent").inc()
        log.info(
            "alert sent",
            extra={"alerts": [r.id for r in covered][:20], "channel": channel.name},
        )
    return report


def _messages(
    store: Store, rows: Sequence[Any], pii: bool, record_url: RecordUrl | None
) -> list[Message | None]:
    """Each row's message, with the lead and its records read now (see messages.py); None
    for an alert about a lead that is no longer in the store."""
    keys = {r.data["lead_key"] for r in rows if isinstance(r.data, dict) and "lead_key" in r.data}
    with store.connect() as conn:
        leads = repo.load_leads(conn, keys) if keys else {}
        links = _record_links(conn, keys, record_url)
    out: list[Message | None] = []
    for row in rows:
        key = row.data.get("lead_key") if isinstance(row.data, dict) else None
        if key and key not in leads:
            out.append(None)
            continue
        view = LeadView(leads.get(key), links.get(key, [])) if key else None
        try:
            out.append(render(row.event, row.data, view, pii))
        except (KeyError, TypeError, ValueError):  # a row written by another version
            out.append(Message(f"leadbridge: {row.event}", f"alert {row.id}"))
    return out


def _record_links(
    conn: Connection, keys: set[str], record_url: RecordUrl | None
) -> dict[str, list[tuple[str, str | None]]]:
    found: dict[str, list[tuple[str, str | None]]] = {}
    if not keys:
        return found
    rows = conn.execute(
        select(target_links.c.lead_key, target_links.c.target, target_links.c.external_id)
        .where(target_links.c.lead_key.in_(list(keys)))
        .order_by(target_links.c.target)
    )
    for key, target, external_id in rows:
        url = record_url(target, external_id) if record_url and external_id else None
        found.setdefault(key, []).append((target, url))
    return found


def _failed(
    store: Store,
    settings: AlertSettings,
    channel: str,
    rows: Sequence[Any],
    answer: Answer,
    now: datetime,
    report: ChannelReport,
) -> None:
    """The channel refused or didn't answer: it and its rows back off, together."""
    with store.begin() as conn:
        failures = _channel_state(conn, channel).failures + 1
        retry_at = now + _backoff(settings, failures)
        outbox.retry_later(conn, rows, retry_at, answer.text)
        conn.execute(
            update(alert_channels)
            .where(alert_channels.c.name == channel)
            .values(
                failures=failures,
                retry_at=retry_at,
                last_failure_at=now,
                last_error=answer.text,
            )
        )
    report.failed += len(rows)
    report.error = answer.text
    report.backing_off_until = retry_at
    for row in rows:
        metrics.ALERTS.labels(channel, row.event, "failed").inc()
    log.warning(
        "alert channel failed; backing off",
        extra={
            "channel": channel,
            "alerts": [r.id for r in rows][:20],
            "retry_at": retry_at.isoformat(),
            "answer": answer.text,
        },
    )


def _backoff(settings: AlertSettings, failures: int) -> timedelta:
    """Exponential with jitter in its upper half, capped at `retry_max`."""
    ceiling = min(
        settings.retry_max.total_seconds(),
        settings.retry_base.total_seconds() * 2 ** (failures - 1),
    )
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def _succeeded(
    conn: Connection, channel: str, now: datetime, window_start: datetime, sent: int
) -> None:
    conn.execute(
        update(alert_channels)
        .where(alert_channels.c.name == channel)
        .values(
            failures=0,
            retry_at=None,
            last_success_at=now,
            window_start=window_start,
            window_sent=sent,
        )
    )


def _window(state: Any, settings: AlertSettings, now: datetime) -> tuple[datetime, int]:
    """The channel's current grouping window and the messages it has sent in it."""
    start = state.window_start
    if start is None or now >= start + settings.window:
        return now, 0
    return start, int(state.window_sent or 0)


def _channel_state(conn: Connection, channel: str) -> Any:
    """The channel's row, made on first use."""
    conn.execute(
        insert(conn, alert_channels)
        .values(name=channel, failures=0, window_sent=0)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return conn.execute(select(alert_channels).where(alert_channels.c.name == channel)).one()


def record_answer(store: Store, channel: str, answer: Answer, now: datetime) -> None:
    """A test message's answer counts as the channel's last success or failure (`status`)."""
    with store.begin() as conn:
        _channel_state(conn, channel)
        values: dict[str, Any] = (
            {"last_success_at": now}
            if answer.ok
            else {"last_failure_at": now, "last_error": answer.text}
        )
        conn.execute(update(alert_channels).where(alert_channels.c.name == channel).values(values))


def send_test(settings: AlertSettings, channel: ChannelSettings, send: Notify = notify) -> Answer:
    """`leadbridge alerts test`: one message straight to the channel, not through the outbox
    (the point is to see the channel answer now)."""
    message = Message(
        "leadbridge test message",
        f"This is a test from leadbridge to the channel **{channel.name}**. "
        f"It will receive: {', '.join(e.value for e in channel.events)}.",
    )
    answer = send(channel.url.get_secret_value(), message, settings.timeout.total_seconds())
    metrics.ALERTS.labels(channel.name, AlertEvent.TEST, "sent" if answer.ok else "failed").inc()
    return answer
