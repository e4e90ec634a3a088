from __future__ import annotations

import json
from pathlib import Path

import pytest

from leadbridge.connectors.marketplace import parse_payload
from leadbridge.connectors.marketplace.file import LeadsFileConfig, LeadsFileSource
from leadbridge.connectors.marketplace.https import UNPARSED
from leadbridge.core.connector import MalformedLead
from leadbridge.core.ingest import pipeline
from leadbridge.core.settings import Settings
from leadbridge.core.store.repo import Store

BODY = {"UserDetails": {"Email": "a@contoso.com"}, "LeadSource": "AzureMarketplace-INS|c.o"}


def _source(path: Path) -> LeadsFileSource:
    return LeadsFileSource(LeadsFileConfig(name="f", path=path))


def test_jsonl_keeps_bad_lines_as_unparsed_raw_leads(tmp_path: Path) -> None:
    path = tmp_path / "leads.jsonl"
    path.write_text(json.dumps(BODY) + "\n{broken\n\n[1]\n", encoding="utf-8")
    raws = [raw for raw, _ in _source(path).fetch(None)]
    assert len(raws) == 3
    assert parse_payload("https", raws[0].payload, None).email == "a@contoso.com"
    for bad in raws[1:]:
        try:
            parse_payload("https", bad.payload, None)
        except MalformedLead as exc:
            assert exc.field == "body" and "line" in exc.reason
        else:  # pragma: no cover - the assertion is the point
            raise AssertionError("bad line parsed")


def test_cursor_resumes_after_the_last_record_and_restarts_on_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "leads.jsonl"
    lines = [json.dumps({**BODY, "n": i}) for i in range(5)]
    path.write_text("\n".join(lines[:3]) + "\n", encoding="utf-8")
    first = list(_source(path).fetch(None))
    assert len(first) == 3
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")  # appended
    rest = list(_source(path).fetch(first[-1][1]))
    assert [r.payload["n"] for r, _ in rest] == [3, 4]
    path.write_text(json.dumps({**BODY, "n": 99}) + "\n", encoding="utf-8")  # replaced
    again = list(_source(path).fetch(rest[-1][1]))
    assert [r.payload["n"] for r, _ in again] == [99]


def test_csv_export_with_aliased_headers_bom_and_a_short_row(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "\ufeffCreated Date,Lead Source,Offer Title,First Name,Last Name,Email Address,"
        "Country/Region,Company Name,Job Title\n"
        "2024-05-20T08:15:00Z,SPZA-PLT|c.o,Offer,Zoë,Müller,ZOE@x.de,Germany,X GmbH,CTO\n"
        "2024-05-20T08:16:00Z,only,three\n",
        encoding="utf-8",
    )
    raws = [raw for raw, _ in _source(path).fetch(None)]
    assert len(raws) == 2
    lead = parse_payload("csv", raws[0].payload, raws[0].occurred_at)
    assert (lead.email, lead.country, lead.action, lead.first_name, lead.title) == (
        "zoe@x.de",
        "DE",
        "PLT",
        "Zoë",
        "CTO",
    )
    assert lead.occurred_at is not None and lead.occurred_at.year == 2024
    try:
        parse_payload("csv", raws[1].payload, None)
    except MalformedLead as exc:
        assert "3 columns" in exc.reason and "9" in exc.reason
    else:  # pragma: no cover
        raise AssertionError("short row parsed")


def test_csv_of_table_rows_reads_customer_info(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    info = json.dumps({"Email": "b@c.io", "FirstName": "B"}).replace('"', '""')
    path.write_text(
        f'LeadSource,CustomerInfo,OfferDisplayName\nAzurePortal-Create|p.o,"{info}",O\n',
        encoding="utf-8",
    )
    raw = next(iter(_source(path).fetch(None)))[0]
    lead = parse_payload("csv", raw.payload, None)
    assert (lead.email, lead.first_name, lead.action) == ("b@c.io", "B", "Create")


def _lines(store: Store, sql: str) -> list[tuple]:
    with store.connect() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(sql)]


@pytest.mark.parametrize("depth", [256, 600, 1000])
def test_a_line_nested_past_orjsons_limit_lands_is_quarantined_and_the_rest_goes_on(
    tmp_path: Path, store: Store, settings: Settings, depth: int
) -> None:
    """orjson (the payload key, the store's JSON column) refuses depth > 255: such a line
    used to fail its batch on every run, so the cursor never moved past it."""
    deep = '{"LeadSource":"AzureMarketplace-INS|c.o","X":' + "[" * depth + "]" * depth + "}"
    after = {**BODY, "UserDetails": {"Email": "after@contoso.com"}}
    path = tmp_path / "leads.jsonl"
    path.write_text(f"{json.dumps(BODY)}\n{deep}\n{json.dumps(after)}\n", encoding="utf-8")
    source = _source(path)
    report = pipeline.ingest(source, store, settings)
    assert (report.fetched, report.quarantined, report.leads_created) == (3, 1, 2)
    quarantined = _lines(store, "SELECT reason, field, message, fix FROM quarantine")
    assert [(reason, field) for reason, field, _, _ in quarantined] == [("malformed", "body")]
    assert "line 2: nested more than" in quarantined[0][2] and quarantined[0][3]
    kept = _lines(store, "SELECT payload FROM raw_leads WHERE status = 'quarantined'")
    assert json.loads(kept[0][0])[UNPARSED] == deep  # the raw text is kept
    assert _lines(store, "SELECT value FROM cursors")[0][0].endswith(":3")  # moved past
    assert pipeline.ingest(source, store, settings).fetched == 0  # and stays there


def test_a_csv_record_the_reader_refuses_is_kept_as_text_and_the_rest_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "export.csv"
    huge = "y" * 200_000  # over csv's per-field limit: the reader raises csv.Error
    path.write_text(
        f"Lead Source,Email\nSPZA-PLT|c.o,a@x.de\nSPZA-PLT|c.o,{huge}\nSPZA-PLT|c.o,b@x.de\n",
        encoding="utf-8",
    )
    raws = [raw for raw, _ in _source(path).fetch(None)]
    assert [r.payload.get("Email") for r in raws] == ["a@x.de", None, "b@x.de"]
    assert raws[1].payload[UNPARSED] == f"SPZA-PLT|c.o,{huge}"
    with pytest.raises(MalformedLead) as err:
        parse_payload("csv", raws[1].payload, None)
    assert "line 3" in err.value.reason and "field larger" in err.value.reason
