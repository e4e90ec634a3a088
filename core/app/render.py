"""Printing read models as a rich table, JSON or CSV.

Lead data comes from outside (a customer typed the name, a CRM wrote the error), so nothing
it holds may act on the reader's terminal or spreadsheet:

- Text (tables, lines): control characters and bidi overrides are shown as visible escapes
  (`\\x1b`, `\\u202e`) instead of being sent raw. Visible rather than dropped, so an operator
  sees that a record carries something odd and which character it is.
- JSON: the same characters are written as JSON `\\uXXXX` escapes, so a JSON reader gets the
  value back exactly and a terminal gets nothing it can act on.
- CSV: text cells a spreadsheet would run as a formula get a leading `'` (OWASP "CSV
  Injection"); their control characters are shown as for text.

Booleans read `true` / `false` in tables and CSV, as in JSON: one spelling a script can
match whichever format it reads. Tables never cut a value (see `emit_table`).
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

# What a terminal acts on: C0 controls (but tab and newline), DEL, C1 controls (0x9b is a
# one-byte CSI, 0x9d a one-byte OSC), and the bidi embeddings, overrides and isolates that
# make a name render reversed (Trojan Source, CVE-2021-42574).
_BIDI = "\u202a-\u202e\u2066-\u2069"
_TERMINAL_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
_VALUE_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")  # one value: no newline either
# What json.dumps(ensure_ascii=False) leaves raw: it escapes only below 0x20.
_JSON_UNSAFE = re.compile(f"[\x7f-\x9f{_BIDI}]")
# OWASP CSV Injection: a cell starting with one of these is read as a formula (the full-width
# forms too, which some spreadsheets fold to ASCII).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_UNBOUNDED = 10_000  # columns: wide enough for any table leadbridge prints


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(value: Any) -> str:
    """One value as text for a terminal: every control character (newline too, so a value
    can't fake a line of its own) and every bidi override shown as a visible escape."""
    return _VALUE_UNSAFE.sub(_visible, _cell(value))


def terminal_safe(text: str) -> str:
    """Text leadbridge composed (lines it wrote around values): like `safe`, but newlines
    and tabs stay, they are the text's own layout."""
    return _TERMINAL_UNSAFE.sub(_visible, text)


class SafeConsole(Console):
    """A rich Console through which no string reaches the terminal raw.

    Every string rich prints — `print` arguments, table cells and titles, progress
    descriptions — becomes a Text in `render_str`, so this is the one place to guard.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(terminal_safe(text), **kwargs)


def _safe_console(**options: Any) -> SafeConsole:
    # Markup off: lead data such as a company "[Acme]" must print as typed, never as a style
    # tag; emoji off for the same reason (":rocket:" stays those characters).
    return SafeConsole(markup=False, highlight=False, emoji=False, soft_wrap=True, **options)


console = _safe_console()


def json_text(data: Any, indent: int | None = 2) -> str:
    """JSON that is both exact and inert on a terminal: the characters json.dumps leaves raw
    (DEL, C1, bidi overrides) become `\\uXXXX` escapes, which decode to the same value."""
    text = json.dumps(data, ensure_ascii=False, indent=indent, default=str)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def emit_json(data: Any) -> None:
    sys.stdout.write(json_text(data) + "\n")


def emit_json_array(items: Iterable[Any]) -> None:
    """`emit_json(list(items))`, the same bytes, written an element at a time as `items`
    yields them: a list of a million leads is never held, as a list or as its text."""
    sys.stdout.writelines(json_array_chunks(items))
    sys.stdout.write("\n")


def json_array_chunks(items: Iterable[Any]) -> Iterator[str]:
    """`json_text(list(items))` in pieces: `[`, then each element as json.dumps nests it
    in a list (indented one level further, comma-separated), then `]`; `[]` for none.
    Splitting an element's text at newlines is safe: JSON escapes a newline in a string."""
    opened = False
    for item in items:
        yield (",\n" if opened else "[\n") + "  " + json_text(item).replace("\n", "\n  ")
        opened = True
    yield "\n]" if opened else "[]"


def emit_json_line(data: Any) -> None:
    sys.stdout.write(json_text(data, indent=None) + "\n")


def csv_cell(value: Any) -> str:
    """One CSV cell a spreadsheet will show and never run.

    A plain number (`-2`, `150.00`, `1e3`) is left as it is: a spreadsheet reads it as a
    constant, there is nothing to run, and leadbridge's own figures (negative or not, and
    money written as decimal text) must stay numbers to add up. Any other text starting
    with a formula character is prefixed with `'`, which spreadsheets take as "this is
    text" (OWASP); `-2+3` is a formula, so it is prefixed.
    """
    text = terminal_safe(_cell(value))  # a newline stays: the csv module quotes it
    if _NUMBER.fullmatch(text):
        return text
    if text.startswith(_FORMULA_START) or text.lstrip(" ").startswith(_FORMULA_START):
        return "'" + text
    return text


def csv_text(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> str:
    """The whole CSV as one string: for a report, whose rows are few and held anyway."""
    return "".join(csv_chunks(rows, columns))


def emit_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    """Written a row at a time as `rows` yields them: a generator of a million leads is
    never held, as rows or as their text."""
    sys.stdout.writelines(csv_chunks(rows, columns))


def csv_chunks(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> Iterator[str]:
    """Every CSV leadbridge writes goes through here, so every cell is neutralised: the
    header line, then each row's line (its quoted values may hold newlines)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    yield _taken(out)
    for row in rows:
        writer.writerow({k: csv_cell(row.get(k)) for k in columns})
        yield _taken(out)


def _taken(out: io.StringIO) -> str:
    """What `out` holds, leaving it empty for the next line."""
    text = out.getvalue()
    out.seek(0)
    out.truncate()
    return text


def emit_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None
) -> None:
    """A table that never cuts a value: a lead key or an email shown as `p***@north…` can't
    be copied into the next command. On a terminal the table fits its width and long values
    wrap (`fold`); into a pipe or a file it takes the width its values need, since nothing
    there wraps lines for the reader."""
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*[safe(row.get(c)) for c in columns])
    if console.is_terminal:
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(_UNBOUNDED), table)
    if natural.maximum <= console.width:
        console.print(table)
        return
    # Console.print never renders wider than its console: a console as wide as the table.
    _safe_console(file=console.file, width=natural.maximum, color_system=None).print(table)


def counts_text(counts: dict[str, int], order: Sequence[str] = ()) -> str:
    """`{"processed": 11, "quarantined": 2}` as a person writes it: `11 processed, 2
    quarantined` — keys in `order` first, the rest by name."""
    rank = {key: i for i, key in enumerate(order)}
    keys = sorted(counts, key=lambda k: (rank.get(k, len(rank)), k))
    return ", ".join(f"{counts[k]} {safe(k)}" for k in keys)


def yes_no(value: bool | None) -> str:
    """Booleans as every text format writes them: `true` / `false`, as in JSON."""
    return "" if value is None else ("true" if value else "false")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # before numbers: a bool is an int to Python
        return yes_no(value)
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
