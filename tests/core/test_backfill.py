"""Backfill resumes after an interruption and leaves the live cursor alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from leadbridge.connectors.marketplace import file as file_source
from leadbridge.core import backfill
from leadbridge.core.settings import load_settings
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store


def test_an_interrupted_backfill_resumes_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    leads = tmp_path / "leads.jsonl"
    leads.write_text(
        "".join(
            json.dumps(
                {"LeadSource": "AzurePortal-Create|c.o", "UserDetails": {"Email": f"u{i}@x.io"}}
            )
            + "\n"
            for i in range(30)
        ),
        encoding="utf-8",
    )
    settings = load_settings(
        None,
        store=f"sqlite:///{tmp_path / 'lb.db'}",
        batch_size=10,
        sources=[{"name": "f", "kind": "leads_file", "path": str(leads)}],
    )
    store = Store(settings.store)
    with store.begin() as conn:
        repo.set_cursor(conn, "source:f", "live-cursor", repo.utcnow())

    real_fetch = file_source.LeadsFileSource.fetch
    seen: list[int] = []

    def dying_fetch(self: Any, cursor: str | None) -> Any:
        for index, item in enumerate(real_fetch(self, cursor)):
            if not seen and index == 15:
                seen.append(index)
                raise KeyboardInterrupt  # the operator's ^C, halfway through
            yield item

    monkeypatch.setattr(file_source.LeadsFileSource, "fetch", dying_fetch)
    with pytest.raises(KeyboardInterrupt):
        backfill.run(store, settings)
    with store.connect() as conn:
        resume_at = repo.get_cursor(conn, backfill.backfill_cursor("f"))
        assert resume_at is not None and resume_at.endswith(":10")  # the last committed batch
        assert repo.get_cursor(conn, "source:f") == "live-cursor"

    report = backfill.run(store, settings)
    assert report.ingested[0].fetched == 20  # only what the interrupted run had not landed
    with store.connect() as conn:
        assert repo.get_cursor(conn, backfill.backfill_cursor("f")) is None
        assert len(repo.lead_keys_active_between(conn, None, None)) == 30
        assert repo.get_cursor(conn, "source:f") == "live-cursor"
