"""A long Azure Table scan stopped midway goes on from its page (issue 21): the cursor of a
scan in progress carries the Table service's continuation token, so a million-row first
read interrupted at 900,000 does not start again from the first row."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from leadbridge.connectors.marketplace.table import MarketplaceTableConfig, MarketplaceTableSource
from leadbridge.core.ingest.pipeline import ingest
from leadbridge.core.settings import Settings, load_settings
from leadbridge.core.store import state
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import leads, raw_leads


def _row(i: int) -> dict[str, Any]:
    return {
        "PartitionKey": f"p{i // 20:03d}",
        "RowKey": f"r{i:05d}",
        "CustomerInfo": json.dumps({"Email": f"user{i}@contoso.com", "FirstName": f"U{i}"}),
        "LeadSource": "AzureMarketplace-INS|contoso.offer",
    }


def _count(store: Store, table: Any) -> int:
    with store.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def batched(tmp_path: Path) -> Settings:
    return load_settings(None, store=f"sqlite:///{tmp_path / 'lb.db'}", batch_size=10)


@pytest.mark.azurite
def test_a_scan_stopped_midway_resumes_from_its_page(
    azurite: str, batched: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.data.tables import TableServiceClient

    name = f"Resume{uuid.uuid4().hex[:8]}"
    service = TableServiceClient.from_connection_string(azurite)
    writer = service.create_table(name)
    for i in range(60):
        writer.create_entity(_row(i))
    source = MarketplaceTableSource(
        MarketplaceTableConfig(name="table", connection_string=azurite, table=name, page_size=7)
    )
    store = Store(batched.store)
    real_fetch = MarketplaceTableSource.fetch

    def ctrl_c_after_35(self: Any, cursor: str | None) -> Iterator[Any]:
        for index, item in enumerate(real_fetch(self, cursor)):
            if index == 35:
                raise KeyboardInterrupt  # 35 pulled, 30 landed with their cursor
            yield item

    monkeypatch.setattr(MarketplaceTableSource, "fetch", ctrl_c_after_35)
    with pytest.raises(KeyboardInterrupt):
        ingest(source, store, batched)
    assert _count(store, raw_leads) == 30
    with store.connect() as conn:
        assert (state.get(conn, state.source_cursor("table")) or "").startswith("scan:")

    monkeypatch.setattr(MarketplaceTableSource, "fetch", real_fetch)
    report = ingest(source, store, batched)
    # Rows 28-59: the page holding row 30 (rows 28-34) again, then the rest; not all 60.
    assert report.fetched == 32
    assert (_count(store, raw_leads), _count(store, leads)) == (60, 60)  # each once
    with store.connect() as conn:
        finished = state.get(conn, state.source_cursor("table")) or ""
    assert not finished.startswith("scan:")  # the scan is done: a plain watermark again
    service.delete_table(name)
    store.dispose()


class _Pages:
    """The Table SDK's page iterator, as far as the source uses it: `continuation_token`
    (the token of the next page) and one list of entities per `next`."""

    def __init__(self, pages: list[list[Any]], token: Any) -> None:
        self.pages, self.continuation_token = pages, token

    def __iter__(self) -> _Pages:
        return self

    def __next__(self) -> list[Any]:
        if not self.pages:
            raise StopIteration
        self.continuation_token = {"PartitionKey": "next", "RowKey": "page"}
        return self.pages.pop(0)


class _Entity(dict[str, Any]):
    """A row as the SDK gives it: the properties, and the service's metadata beside them."""

    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__(row)
        self.metadata: dict[str, Any] = {}


class _Client:
    """Every page asked for after a continuation token is empty: the rows were deleted."""

    def __init__(self) -> None:
        self.asked: list[Any] = []

    def list_entities(self, results_per_page: int) -> Any:
        client = self

        class _Listing:
            def by_page(self, continuation_token: Any = None) -> _Pages:
                client.asked.append(continuation_token)
                if continuation_token is not None:
                    return _Pages([], continuation_token)
                return _Pages([[_Entity(_row(1))], [_Entity(_row(2))]], None)

        return _Listing()


def test_a_stopped_scan_whose_pages_are_gone_scans_again_from_its_watermark() -> None:
    source = MarketplaceTableSource(
        MarketplaceTableConfig(name="t", connection_string="UseDevelopmentStorage=true", table="T")
    )
    client = _Client()
    source._client = client  # type: ignore[assignment]
    stopped = 'scan:{"newest": "", "page": {"PartitionKey": "p", "RowKey": "r"}, "since": ""}'
    rows = list(source.fetch(stopped))
    assert client.asked == [{"PartitionKey": "p", "RowKey": "r"}, None]
    assert [raw.source_key for raw, _ in rows] == ["p000|r00001", "p000|r00002"]
    assert rows[0][1].startswith("scan:")  # mid-scan: the page's own cursor
    assert rows[-1][1] == ""  # the scan done (no row had a Timestamp): a plain watermark
