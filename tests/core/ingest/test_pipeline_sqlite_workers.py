"""Two processors on one SQLite store (an ingest run beside the processing job, or the daemon
beside a one-off `leadbridge ingest`) never merge the same raw lead twice."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import func, select

from leadbridge.core.domain.models import RawLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import load_settings
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import events


def test_two_processors_on_sqlite_merge_each_raw_lead_once(tmp_path: Path) -> None:
    settings = load_settings(None, store=f"sqlite:///{tmp_path / 'lb.db'}", batch_size=50)
    stores = [Store(settings.store), Store(settings.store)]  # two connections, as two processes
    raws = [
        RawLead(
            source="hook",
            source_key=str(i),
            kind="https",
            payload={
                "LeadSource": "AppSource (SPZA)-INS|contoso.crm",
                "UserDetails": {"Email": f"p{i % 150}@contoso.com", "Company": f"C{i}"},
            },
        )
        for i in range(600)
    ]
    for raw in raws:
        pipeline.land_one(stores[0], raw)
    start = threading.Barrier(2)
    reports: list[pipeline.IngestReport] = []

    def work(store: Store) -> None:
        start.wait()
        reports.append(pipeline.process_pending(store, settings))

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    with stores[0].connect() as conn:
        actions = conn.execute(
            select(func.count()).select_from(events).where(events.c.kind == "action")
        ).scalar_one()
    assert actions == len(raws)  # one action event per raw lead, not one per processor
    assert sum(r.processed for r in reports) == len(raws)
    for store in stores:
        store.dispose()
