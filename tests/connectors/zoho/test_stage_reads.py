"""Zoho CRM stage read-back: COQL on Modified_Time, paged with OFFSET, past the 10,000-row
cap by keyset, with Zoho's own times. Shapes: Get Records through a COQL Query (zoho.com/crm/
developer/docs/api/v8/Get-Records-through-COQL-Query.html): `data`, `info.count`,
`info.more_records`, DateTime values with the org's offset; 204 when nothing matches."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import responses

from leadbridge.connectors.zoho import target as zoho
from leadbridge.connectors.zoho.target import ZohoConfig, ZohoTarget
from leadbridge.core.domain.models import Stage

API = "https://www.zohoapis.com/crm/v8"
COQL = f"{API}/coql"
KEY = "a" * 32


def _target() -> ZohoTarget:
    target = ZohoTarget(
        ZohoConfig(name="zoho", client_id="c", client_secret="s", refresh_token="r")
    )
    responses.post(
        "https://accounts.zoho.com/oauth/v2/token",
        json={"access_token": "t", "api_domain": "https://www.zohoapis.com", "expires_in": 3600},
    )
    return target


def _page(*records: dict[str, Any], more: bool = False) -> None:
    responses.post(
        COQL, json={"data": list(records), "info": {"count": len(records), "more_records": more}}
    )


def _lead(record_id: str, modified: str, stage: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "id": record_id,
        "LeadBridge_Key": KEY if record_id != "none" else None,
        "LeadBridge_Stage": stage,
        "Converted__s": False,
        "Converted_Deal": None,
        "Modified_Time": modified,
        **extra,
    }


def _queries() -> list[str]:
    return [
        json.loads(c.request.body)["select_query"] for c in responses.calls if c.request.url == COQL
    ]


@responses.activate
def test_changes_are_read_page_by_page_with_zohos_times_and_the_overlap() -> None:
    target = _target()
    _page(
        _lead("1", "2026-05-01T03:00:00-07:00", "SQL"),
        _lead("2", "2026-05-01T10:01:00+00:00", "Nurture"),
        more=True,
    )
    _page(
        _lead("3", "2026-05-01T10:02:00+00:00", None, Converted__s=True),
        _lead(
            "4", "2026-05-01T10:03:00+00:00", "MQL", Converted__s=True, Converted_Deal={"id": "9"}
        ),
        _lead("5", "2026-05-01T10:04:00+00:00", "Not a stage"),
    )
    changes, watermark = target.stage_changes("2026-05-01T10:00:00+00:00")
    first, second = _queries()
    assert (
        "where (Modified_Time >= '2026-05-01T09:55:00+00:00' and LeadBridge_Key is not null)"
        in first
    )
    assert "order by Modified_Time asc limit 200 offset 0" in first
    assert second.endswith("limit 200 offset 200")
    assert [(c.external_id, c.stage) for c in changes] == [
        ("1", Stage.SQL),
        ("2", Stage.LEAD),
        ("3", Stage.SQL),  # converted, no deal
        ("4", Stage.OPPORTUNITY),  # converted with a deal
    ]
    assert changes[0].at == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)  # Zoho's own time
    assert datetime.fromisoformat(watermark) == datetime(2026, 5, 1, 10, 4, tzinfo=UTC)


@responses.activate
def test_nothing_changed_is_a_204_and_the_watermark_stays() -> None:
    target = _target()
    responses.post(COQL, status=204)
    changes, watermark = target.stage_changes("2026-05-01T10:00:00+00:00")
    assert changes == []
    assert datetime.fromisoformat(watermark) == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


@responses.activate
def test_past_the_offset_cap_the_query_starts_again_from_the_newest_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(zoho, "COQL_MAX_ROWS", 400)  # 10,000 in Zoho; two pages here
    target = _target()
    _page(_lead("1", "2026-05-01T10:01:00+00:00", "MQL"), more=True)
    _page(_lead("2", "2026-05-01T10:02:00+00:00", "SQL"), more=True)
    _page(
        _lead("2", "2026-05-01T10:02:00+00:00", "SQL"),
        _lead("3", "2026-05-01T10:03:00+00:00", "SQL"),
    )
    changes, _ = target.stage_changes(None)
    queries = _queries()
    assert queries[0].endswith("offset 0") and queries[1].endswith("offset 200")
    assert "Modified_Time >= '2026-05-01T10:02:00+00:00'" in queries[2]  # keyset restart
    assert queries[2].endswith("offset 0")
    assert sorted(c.external_id for c in changes) == ["1", "2", "3"]  # read twice, counted once
