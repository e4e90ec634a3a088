"""`leadbridge backfill`: re-read sources from the start, then push leads in a time range.

Resumable: each source is read under its own backfill cursor (kept until the read
finishes), and what is to be delivered is queued in the outbox before any of it is sent, so
an interrupted backfill run again picks up where it stopped. Landing dedupes and delivery
skips unchanged payloads, so re-running a finished backfill costs reads, not writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from leadbridge.core.connector import build
from leadbridge.core.delivery.deliver import DeliveryReport, deliver
from leadbridge.core.domain.mapping import payload_hash
from leadbridge.core.ingest.pipeline import IngestReport, Watcher, ingest
from leadbridge.core.settings import Settings
from leadbridge.core.store import repo, state
from leadbridge.core.store.repo import Store, utcnow

# Leads read, or queued, at a time.
PAGE = 1000


@dataclass
class BackfillReport:
    ingested: list[IngestReport] = field(default_factory=list)
    queued: int = 0
    delivered: list[DeliveryReport] = field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        return any(r.needs_attention for r in self.ingested) or any(
            r.needs_attention for r in self.delivered
        )


def run(
    store: Store,
    settings: Settings,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    sources: list[str] | None = None,
    targets: list[str] | None = None,
    on_ingest: Callable[[IngestReport], None] | None = None,
    on_deliver: Callable[[DeliveryReport], None] | None = None,
    watcher: Watcher | None = None,
) -> BackfillReport:
    report = BackfillReport()
    for config in settings.source_configs():
        if sources and config.name not in sources:
            continue
        key = state.backfill_cursor(config.name)
        report.ingested.append(
            ingest(
                build(config),
                store,
                settings,
                cursor_key=key,
                on_batch=on_ingest,
                watcher=watcher,
            )
        )
        with store.begin() as conn:
            state.forget(conn, key)  # finished: the next backfill reads from the start
    names = [t.name for t in settings.targets if not targets or t.name in targets]
    with store.begin() as conn:
        keys = repo.lead_keys_active_between(conn, since, until)
        now = utcnow()
        for page in _pages(keys):  # a row per lead and target: built a page at a time
            repo.enqueue(conn, page, names, now)
    report.queued = len(keys) * len(names)
    for config in settings.target_configs():
        if config.name in names:
            target = build(config, placeholder=settings.placeholder)
            # A backfill queues no per-lead alert: 10,000 old leads are not 10,000 hot ones.
            report.delivered.append(
                deliver(target, store, settings, on_batch=on_deliver, hot_leads=False)
            )
    return report


def dry_run(
    store: Store,
    settings: Settings,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    targets: list[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """What each target would be sent for the leads in range, changing nothing.

    Sources are not read (that would land raw leads); this shows the store's leads as they
    would go out now, and whether each differs from the last successful push.

    The leads are read a page at a time, for each target: a store of a million leads holds
    one page of them in memory, and the list of their keys (~90 bytes a lead).
    """
    with store.connect() as conn:
        keys = repo.lead_keys_active_between(conn, since, until)
        for config in settings.target_configs():
            if targets and config.name not in targets:
                continue
            target = build(config, placeholder=settings.placeholder)
            for page in _pages(keys):
                leads = repo.load_leads(conn, page)
                links = repo.load_links(conn, config.name, page)
                for key in page:
                    if key not in leads:  # erased since the listing
                        continue
                    payload = target.payload(leads[key])
                    link = links.get(key)
                    yield {
                        "target": config.name,
                        "lead_key": key,
                        "would_send": link is None or link.pushed_hash != payload_hash(payload),
                        "payload": payload,
                    }


def _pages(keys: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), PAGE):
        yield keys[start : start + PAGE]
