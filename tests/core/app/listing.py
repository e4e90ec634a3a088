"""`leads list` over more leads than the store is read in at a time (views.LIST_PAGE): a
store holding them, and what `--format csv` and `--format json` must print for it. Shared by
the SQLite tests (test_views, test_cli) and the PostgreSQL ones (test_cli_postgresql)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leadbridge.core.app import render, views
from leadbridge.core.domain.models import Lead
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store
from tests.clihelp import run_cli

MANY = views.LIST_PAGE * 5 // 2  # two pages and a half: the listing crosses a page's end
START = datetime(2026, 1, 1, tzinfo=UTC)


def save_many_leads(store: Store, count: int = MANY) -> list[str]:
    """`count` leads a minute apart; their keys oldest first, the order `leads list` gives."""
    leads = [
        Lead(
            lead_key=f"{n:032x}",
            offer_key="pub.offer",
            email=f"p{n}@example.com",
            company=f"Company {n}",
            first_seen=START + timedelta(minutes=n),
            last_seen=START + timedelta(minutes=n),
        )
        for n in range(count)
    ]
    with store.begin() as conn:
        repo.save_leads(conn, leads, START)
    return [lead.lead_key for lead in leads]


def check_listed_in_full(
    lb: list[str | Path], keys: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`leads list --format json` and `--format csv` print every lead, oldest first, the
    CSV a cell for each JSON value; and never through `views.list_leads`, which would hold
    them all before the first is written (made to fail here)."""

    def held(*args: object, **kwargs: object) -> None:
        raise AssertionError("leads list built the whole list: it must stream")

    monkeypatch.setattr(views, "list_leads", held)
    rows = json.loads(run_cli([*lb, "leads", "list", "--format", "json"]).stdout)
    printed = run_cli([*lb, "leads", "list", "--format", "csv"]).stdout
    table = list(csv.DictReader(io.StringIO(printed)))
    assert [row["lead_key"] for row in rows] == keys
    assert list(rows[0]) == list(views.LEAD_COLUMNS)
    assert table == [{k: render.csv_cell(v) for k, v in row.items()} for row in rows]
