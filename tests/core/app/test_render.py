"""What leadbridge prints is inert: no cell a spreadsheet runs, no character a terminal obeys,
and JSON that still gives every value back exactly."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from leadbridge.core.app import render

# A terminal acts on these: ESC (CSI, OSC title, OSC 8 links), BEL, the 8-bit CSI and OSC,
# DEL, carriage return (overwrites the line), and the bidi overrides and isolates.
ACTIVE = "\x1b\x07\x9b\x9d\x7f\r\x00\x85\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("@SUM(1+1)", "'@SUM(1+1)"),
        ("-2+3", "'-2+3"),
        ("\t=1+1", "'\t=1+1"),
        ("  =1+1", "'  =1+1"),  # spaces first: some spreadsheets trim them
        ("\uff1d1+1", "'\uff1d1+1"),  # full-width equals
        ("\r=1+1", "\\x0d=1+1"),  # a carriage return is shown, so nothing leads any more
        ("Contoso Ltd", "Contoso Ltd"),
        ("a-b=c", "a-b=c"),  # only the first character counts
        ("", ""),
        (None, ""),
    ],
)
def test_text_a_spreadsheet_would_run_is_quoted(value: str | None, cell: str) -> None:
    assert render.csv_cell(value) == cell


@pytest.mark.parametrize("number", [-2, -2.5, 0, 30, Decimal("-12.50"), "-12.50", "+1", "1e3"])
def test_plain_numbers_stay_numbers(number: object) -> None:
    """A number literal is a constant to a spreadsheet, never a formula; leadbridge's own
    figures (negative ones too) must still add up."""
    assert render.csv_cell(number) == str(number)


def test_every_csv_cell_goes_through_the_rule() -> None:
    rows = [{"name": "=1+1", "score": -5, "tags": ["@a", "b"], "note": "a\nb", "x": "\x1b[2J"}]
    text = render.csv_text(rows, ("name", "score", "tags", "note", "x"))
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row == {"name": "'=1+1", "score": "-5", "tags": "'@a,b", "note": "a\nb", "x": "\\x1b[2J"}


LEADS = [
    {"lead_key": "a" * 32, "company": "Line one\nline two", "score": 5, "actions": ["INS"]},
    {"lead_key": "b" * 32, "company": "Eve\u202eevE", "do_not_contact": True, "flags": []},
    {"lead_key": "c" * 32, "notes": {}, "fit": None, "at": datetime(2026, 1, 2, tzinfo=UTC)},
]


@pytest.mark.parametrize("items", [[], LEADS[:1], LEADS, [[], {}, "x", 1]])
def test_a_json_array_written_element_by_element_is_the_whole_lists_text(
    items: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    render.emit_json(items)
    whole = capsys.readouterr().out
    render.emit_json_array(iter(items))
    assert capsys.readouterr().out == whole


@pytest.mark.parametrize("rows", [[], LEADS[:1], LEADS])
def test_csv_written_row_by_row_is_the_whole_lists_text(
    rows: list[dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    columns = ("lead_key", "company", "notes", "do_not_contact")
    render.emit_csv(iter(rows), columns)
    assert capsys.readouterr().out == render.csv_text(rows, columns)


def test_csv_and_json_are_written_as_the_rows_come(monkeypatch: pytest.MonkeyPatch) -> None:
    """A row is written before the next is asked for: a listing of a million leads is
    never held, as rows or as text."""
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    written: list[str] = []  # what was out when the second row was asked for

    def rows() -> Iterator[dict[str, object]]:
        yield {"name": "first"}
        written.append(out.getvalue())
        yield {"name": "second"}

    render.emit_csv(rows(), ("name",))
    out.truncate(0)
    out.seek(0)
    render.emit_json_array(rows())
    assert written == ["name\r\nfirst\r\n", '[\n  {\n    "name": "first"\n  }']


def test_a_value_shows_its_control_characters_instead_of_sending_them() -> None:
    shown = render.safe("Eve" + ACTIVE + "\n\t!")
    assert not set(shown) & set(ACTIVE + "\n\t")
    assert shown.startswith("Eve\\x1b\\x07\\x9b\\x9d\\x7f\\x0d\\x00\\x85\\u202a")
    assert shown.endswith("\\u2069\\x0a\\x09!")
    assert render.safe("Zoë Ørsted 山田 [Acme]") == "Zoë Ørsted 山田 [Acme]"  # text stays text


def test_lines_leadbridge_writes_keep_their_newlines() -> None:
    assert render.terminal_safe("a\x1b[2J\nb\tc\u202e") == "a\\x1b[2J\nb\tc\\u202e"


def test_json_escapes_what_json_dumps_leaves_raw_and_round_trips() -> None:
    value = {"name": "Eve" + ACTIVE, "company": "Zoë 山田"}
    text = render.json_text(value)
    assert not set(text) & set(ACTIVE)
    assert "Zoë 山田" in text  # readable, not \u-escaped
    assert json.loads(text) == value
    assert "\n" not in render.json_text(value, indent=None)


def test_console_print_and_tables_send_nothing_raw(capsys: pytest.CaptureFixture[str]) -> None:
    hostile = "\x1b]0;pwned\x07Eve\x9b2J\u202eevE :rocket: [bold]x[/bold]"
    render.console.print(f"lead {hostile}")
    render.emit_table([{"name": hostile, "note": "line one\nline two"}], ("name", "note"))
    out = capsys.readouterr().out
    assert not set(out) & set(ACTIVE)
    assert "\\x1b]0;pwned\\x07Eve\\x9b2J\\u202eevE" in out  # visible in the line
    assert ":rocket:" in out and "[bold]x[/bold]" in out  # printed as typed
    squeezed = out.replace("\n", "").replace("│", "").replace(" ", "")
    assert "lineone\\x0alinetwo" in squeezed  # a value can't start a table line of its own


def test_a_table_never_cuts_a_value(capsys: pytest.CaptureFixture[str]) -> None:
    """Into a pipe (not a terminal) a table takes the width its values need: a key and an
    email stay whole, so they can be copied into the next command."""
    key, email = "0123456789abcdef" * 2, "m***@wideworldimporters.example.com"
    render.emit_table(
        [{"lead_key": key, "email": email, "company": "x" * 60}], ("lead_key", "email", "company")
    )
    out = capsys.readouterr().out
    assert key in out and email in out and "x" * 60 in out and "…" not in out


def test_booleans_read_the_same_in_every_format() -> None:
    assert render.csv_cell(False) == "false" and render.csv_cell(True) == "true"
    assert render.safe(True) == "true"
    [row] = list(csv.DictReader(io.StringIO(render.csv_text([{"dnc": False}], ("dnc",)))))
    assert row == {"dnc": "false"}


def test_counts_read_as_words() -> None:
    assert render.counts_text({"quarantined": 2, "processed": 11}) == "11 processed, 2 quarantined"
    assert (
        render.counts_text({"sql": 1, "lead": 7}, order=["lead", "mql", "sql"]) == "7 lead, 1 sql"
    )
