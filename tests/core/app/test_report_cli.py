"""`leadbridge report funnel` in every format, and the HTML page rendered by headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leadbridge.core.app import cli
from leadbridge.core.domain.models import Event, Lead
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store
from tests.clihelp import EXIT_USAGE, run_cli
from tests.conftest import need
from tests.core.reports.test_reports import (  # noqa: F401 - the hand-computed fixture history
    SPEND,
    _contact_me,
    history,
)


@pytest.fixture
def config(history: Store, tmp_path: Path) -> tuple[Path, Path]:  # noqa: F811
    path = tmp_path / "lb.yaml"
    path.write_text(f"store: {history.url}\nlog_format: text\n", encoding="utf-8")
    spend = tmp_path / "spend.csv"
    spend.write_text(SPEND, encoding="utf-8")
    return path, spend


@pytest.fixture
def funnel(config: tuple[Path, Path]) -> list[str | Path]:
    """`report funnel` on the fixture history, in its quarter, with its spend file."""
    path, spend = config
    return ["--config", path, "report", "funnel", "--at", "2026-05-01", "--spend", spend]


def test_json_csv_and_table(funnel: list[str | Path]) -> None:
    report = json.loads(run_cli([*funnel, "--format", "json"]).stdout)
    assert report["total"]["acceptance"]["rate"] == 0.6
    assert report["total"]["cost"]["lagged_per_sql"] == "150.00"
    by_offer = run_cli([*funnel, "--format", "csv", "--by", "offer"]).stdout
    rows = list(csv.DictReader(io.StringIO(by_offer)))
    assert [r["group"] for r in rows] == ["total", "o.one", "o.two"]
    assert rows[0]["velocity_p90_days"] == "16.8" and rows[0]["sla_breaches"] == "1"
    table = run_cli(funnel)
    assert "funnel 2026-Q2" in table.output
    assert "1 of 2 on time, 1 breached, 0 open" in table.output
    assert "breach" in table.output and "a***@x.io" in table.output


def test_the_follow_up_list_names_who_to_call_and_who_is_late(
    config: tuple[Path, Path],
    history: Store,  # noqa: F811
) -> None:
    """A Contact-me lead two minutes old is open — due tomorrow, nobody is late — and is
    listed by who it is in every format; the email is masked there as in every table."""
    asked = datetime.now(UTC) - timedelta(minutes=2)
    _contact_me(history, "h", asked, first_name="Ana", last_name="Pereira", company="Fabrikam")
    today = asked.date().isoformat()
    path = ["--config", str(config[0]), "report", "funnel", "--period", "month", "--at", today]

    rows = list(
        csv.DictReader(io.StringIO(run_cli([*path, "--follow-up", "--format", "csv"]).stdout))
    )
    assert [(r["status"], r["name"], r["company"], r["email"]) for r in rows] == [
        ("open", "Ana Pereira", "Fabrikam", "h***@contoso.com")
    ]
    assert rows[0]["asked_at"] == asked.isoformat() and rows[0]["due_by"]
    figures = list(csv.DictReader(io.StringIO(run_cli([*path, "--format", "csv"]).stdout)))
    assert (figures[0]["sla_breaches"], figures[0]["sla_open"]) == ("0", "1")

    report = json.loads(run_cli([*path, "--format", "json"]).stdout)
    assert report["total"]["sla"]["breaches"] == []
    assert report["total"]["sla"]["share"] is None  # nothing decided yet: not 0 %
    assert json.loads(run_cli([*path, "--follow-up", "--format", "json"]).stdout) == [
        {"status": "open", **report["total"]["sla"]["open"][0]}
    ]
    table = run_cli(path).output
    assert "0 breached, 1 open" in table and "Ana Pereira" in table and "h***@contoso.com" in table
    assert "h.person@contoso.com" not in table
    page = run_cli([*path, "--format", "html"]).stdout
    assert "id='sla-open'" in page and "Ana Pereira" in page and "sla-breaches" not in page


EVIL_OFFER = '=HYPERLINK("http://evil.example","totals")'
EVIL_ACTION = "\x1b]0;pwned\x07\u202eSNI"


def _hostile_group(store: Store) -> None:
    """One more lead whose offer key and action code a customer chose."""
    at = datetime(2026, 5, 2, tzinfo=UTC)
    lead = Lead(
        lead_key="f" * 32,
        offer_key=EVIL_OFFER,
        email="f@x.io",
        first_seen=at,
        last_seen=at,
        first_action=EVIL_ACTION,
        actions=[EVIL_ACTION],
    )
    event = Event(
        lead_key=lead.lead_key, kind="action", actor="hook", at=at, data={"action": EVIL_ACTION}
    )
    with store.begin() as conn:
        repo.save_leads(conn, [lead], at)
        repo.add_events(conn, [event])


def test_group_names_from_outside_are_neutralised_in_every_format(
    funnel: list[str | Path],
    history: Store,  # noqa: F811
) -> None:
    _hostile_group(history)
    exported = run_cli([*funnel, "--format", "csv", "--by", "offer"])
    groups = {r["group"]: r for r in csv.DictReader(io.StringIO(exported.stdout))}
    assert "'" + EVIL_OFFER in groups and EVIL_OFFER not in groups
    assert groups["total"]["lagged_cost_per_sql"] == "150.00"  # a figure, left a number

    for args in (["--by", "action"], ["--format", "json", "--by", "action"]):
        result = run_cli([*funnel, *args])
        assert not [c for c in ("\x1b]0;", "\x07", "\u202e") if c in result.stdout], args
    report = json.loads(run_cli([*funnel, "--format", "json", "--by", "action"]).stdout)
    assert EVIL_ACTION in [g["group"] for g in report["groups"]]  # exact once decoded
    page = run_cli([*funnel, "--format", "html", "--by", "action"])
    assert "\x1b" not in page.stdout and "\u202e" not in page.stdout


def test_explicit_dates_and_usage_errors(
    config: tuple[Path, Path], funnel: list[str | Path], tmp_path: Path
) -> None:
    april = json.loads(
        run_cli([*funnel, "--from", "2026-04-01", "--to", "2026-04-30", "--format", "json"]).stdout
    )
    assert april["period"]["label"] == "2026-04-01..2026-04-30"
    assert april["total"]["stages"]["sql"] == 3  # a, b, e (d's SQL is in May)
    half = run_cli([*funnel, "--from", "2026-04-01"], expect=EXIT_USAGE)
    assert "give both --from and --to" in half.output
    bad = tmp_path / "bad.csv"
    bad.write_text("date,amount\nyesterday,1\n", encoding="utf-8")
    report = ["--config", config[0], "report", "funnel"]
    result = run_cli([*report, "--spend", bad], expect=EXIT_USAGE)
    assert "YYYY-MM-DD" in result.output
    wrong = run_cli([*report, "--by", "country"], expect=EXIT_USAGE)
    assert "offer" in wrong.output and "target" in wrong.output  # the choices are named


def test_the_html_page_renders_in_headless_chromium(
    funnel: list[str | Path], tmp_path: Path
) -> None:
    page = tmp_path / "funnel.html"
    run_cli([*funnel, "--format", "html", "--by", "offer", "--output", page])
    html = page.read_text(encoding="utf-8")
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # self-contained
    assert "https://" not in html and "<script" not in html
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    need(browser is not None, "Chromium is not installed (apt-get install chromium)")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1000,1800",
    ]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    for chart in ("funnel-chart", "weekly-chart", "velocity-chart", "sla-breaches", "groups"):
        assert f'id="{chart}"' in dom.stdout, chart  # the browser parsed the page and its SVG
    shot = tmp_path / "funnel.png"
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120
    )
    image = shot.read_bytes()
    assert image[:8] == b"\x89PNG\r\n\x1a\n" and len(image) > 20_000  # drawn, not blank


def test_the_funnel_table_lists_the_most_urgent_follow_ups_and_says_how_many_more(
    config: tuple[Path, Path],
    history: Store,  # noqa: F811
) -> None:
    """Under the figures, a terminal gets the first FOLLOW_UP_SHOWN, not every open
    Contact-me lead of a quarter; `--follow-up` lists them all."""
    asked = datetime.now(UTC) - timedelta(minutes=30)
    keys = "0123456789ABCDEFGHIJKLMNO"  # the fixture history's leads are a-g
    for minutes, key in enumerate(keys):
        _contact_me(history, key, asked + timedelta(minutes=minutes), first_name=f"Caller{key}q")
    today = asked.date().isoformat()
    path = ["--config", str(config[0]), "report", "funnel", "--period", "month", "--at", today]
    table = run_cli(path).output
    shown = cli.FOLLOW_UP_SHOWN
    assert f"0 breached, {len(keys)} open" in table
    assert all(f"Caller{key}q" in table for key in keys[:shown])  # the first due, first
    assert not any(f"Caller{key}q" in table for key in keys[shown:])
    assert f"… and {len(keys) - shown} more" in table and "--follow-up" in table
    everyone = run_cli([*path, "--follow-up"]).output
    assert all(f"Caller{key}q" in everyone for key in keys) and "more:" not in everyone
