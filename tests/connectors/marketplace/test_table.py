"""Table row parsing, plus the source against Azurite: rounds of new rows, paging, read-only."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from leadbridge.connectors.marketplace.https import UNPARSED
from leadbridge.connectors.marketplace.table import (
    SOURCE_KEY_CHARS,
    MarketplaceTableConfig,
    MarketplaceTableSource,
    parse_table_row,
    parse_time,
    source_key,
    storable,
)
from leadbridge.core.connector import MalformedLead
from leadbridge.core.ingest.pipeline import ingest
from leadbridge.core.settings import Settings
from leadbridge.core.store.repo import Store


def test_bad_customer_info_names_the_field() -> None:
    with pytest.raises(MalformedLead) as err:
        parse_table_row({"LeadSource": "AzurePortal-Create|a.b", "CustomerInfo": "{oops"})
    assert err.value.field == "CustomerInfo"


def test_customer_info_nested_a_thousand_deep_names_the_field() -> None:
    info = '{"Email":' + "[" * 1000 + "]" * 1000 + "}"
    with pytest.raises(MalformedLead) as err:
        parse_table_row({"LeadSource": "AzurePortal-Create|a.b", "CustomerInfo": info})
    assert err.value.field == "CustomerInfo" and "nested more than" in err.value.reason


def test_a_row_the_store_cannot_serialize_lands_as_escaped_text() -> None:
    row = {"PartitionKey": "p", "RowKey": "r", "CustomerInfo": '{"FirstName": "Ada\ud800"}'}
    landed = storable(row)
    assert json.loads(landed[UNPARSED]) == row  # every character kept, escaped
    assert "surrogates" in landed["_error"]
    assert storable({"PartitionKey": "p"}) == {"PartitionKey": "p"}


def test_source_keys_longer_than_the_column_are_hashed() -> None:
    assert source_key("2024-05-14", "abc") == "2024-05-14|abc"
    long_key = source_key("p" * 1024, "r" * 1024)  # Azure allows 1 KiB each
    assert len(long_key) <= SOURCE_KEY_CHARS and long_key.startswith("sha256:")
    assert long_key == source_key("p" * 1024, "r" * 1024)
    assert source_key("p", "r\ud800").startswith("sha256:")  # no store takes a lone surrogate


def test_extra_and_missing_properties_are_fine() -> None:
    lead = parse_table_row(
        {
            "LeadSource": "AzurePortal-Create|a.b",
            "ProductId": "x",
            "CustomerInfo": json.dumps({"Email": "a@b.co"}),
        }
    )
    assert lead.email == "a@b.co" and lead.offer_id == "a.b"


def test_azure_seven_digit_fractions() -> None:
    assert parse_time("2024-05-14T09:31:02.1234567Z") == datetime(
        2024, 5, 14, 9, 31, 2, 123456, tzinfo=UTC
    )


def _row(i: int) -> dict[str, str]:
    return {
        "PartitionKey": "2024-05-14",
        "RowKey": str(uuid.uuid4()),
        "ActionCode": "INS",
        "CreatedTime": "2024-05-14T09:31:01.882Z",
        "CustomerInfo": json.dumps(
            {"Email": f"user{i}@contoso.com", "FirstName": f"U{i}", "Country": "US"}
        ),
        "LeadSource": f"AzureMarketplace-INS|contoso.offer-{i % 3}",
        "OfferDisplayName": f"Offer {i % 3}",
    }


@pytest.mark.azurite
def test_rounds_of_new_rows_arrive_once_each_through_every_page(
    azurite: str, store: Store, settings: Settings
) -> None:
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.data.tables import TableSasPermissions, TableServiceClient, generate_table_sas

    table_name = f"Leads{uuid.uuid4().hex[:8]}"
    service = TableServiceClient.from_connection_string(azurite)
    writer = service.create_table(table_name)
    # The source gets a read-only SAS: any write it attempted would fail the test.
    parts = dict(p.split("=", 1) for p in azurite.rstrip(";").split(";"))
    sas = generate_table_sas(
        AzureNamedKeyCredential(parts["AccountName"], parts["AccountKey"]),
        table_name,
        permission=TableSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    read_only = f"TableEndpoint={parts['TableEndpoint']};SharedAccessSignature={sas}"
    source = MarketplaceTableSource(
        MarketplaceTableConfig(
            name="table", connection_string=read_only, table=table_name, page_size=7
        )
    )

    total = 0
    for round_size in (23, 0, 11, 5):
        for i in range(total, total + round_size):
            writer.create_entity(_row(i))
        total += round_size
        ingest(source, store, settings)
        with store.connect() as conn:
            from sqlalchemy import func, select

            from leadbridge.core.store.tables import leads, raw_leads

            assert conn.execute(select(func.count()).select_from(raw_leads)).scalar_one() == total
            assert conn.execute(select(func.count()).select_from(leads)).scalar_one() == total

    # Overlap re-reads recent rows; nothing is landed twice and the cursor only moved forward.
    again = ingest(source, store, settings)
    assert again.leads_created == 0
    assert again.fetched > 0  # the overlap window re-read rows, harmlessly
    service.delete_table(table_name)
