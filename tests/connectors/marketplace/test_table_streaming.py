"""An Azure Table is read a page at a time (issue 21): a million-row first read must not
fetch every page before the first row is landed, so the rows pulled so far have cost only
the pages that hold them. Counted at the HTTP layer, against Azurite."""

from __future__ import annotations

import json
import uuid
from itertools import islice
from typing import Any

import pytest

from leadbridge.connectors.marketplace.table import MarketplaceTableConfig, MarketplaceTableSource

ROWS = 60
PAGE = 7  # nine pages


def _row(i: int) -> dict[str, Any]:
    return {
        "PartitionKey": "2026-12-03",
        "RowKey": f"r{i:05d}",
        "CustomerInfo": json.dumps({"Email": f"user{i}@contoso.com", "LastName": f"U{i}"}),
        "LeadSource": "AzureMarketplace-INS|contoso.offer",
    }


@pytest.mark.azurite
def test_rows_are_pulled_a_page_at_a_time(azurite: str) -> None:
    from azure.data.tables import TableClient, TableServiceClient

    name = f"Stream{uuid.uuid4().hex[:8]}"
    table = TableServiceClient.from_connection_string(azurite).create_table(name)
    for start in range(0, ROWS, 20):  # entity-group transactions, one partition
        table.submit_transaction([("create", _row(i)) for i in range(start, start + 20)])
    source = MarketplaceTableSource(
        MarketplaceTableConfig(name="t", connection_string=azurite, table=name, page_size=PAGE)
    )
    pages: list[int] = []  # one entry per response the source's client received
    source._client = TableClient.from_connection_string(
        azurite, table_name=name, raw_response_hook=lambda _response: pages.append(1)
    )

    records = source.fetch(None)
    first = list(islice(records, PAGE + 3))  # the first page and three rows of the second
    assert [raw.source_key for raw, _ in first] == [f"2026-12-03|r{i:05d}" for i in range(10)]
    assert len(pages) == 2, "read ahead of the rows pulled: the table is not streamed"
    rest = list(records)
    assert len(first) + len(rest) == ROWS
    assert len(pages) == -(-ROWS // PAGE)  # every page once, in the end
    table.delete_table()
