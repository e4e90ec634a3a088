"""`leadbridge report funnel` in every format, and the HTML page rendered by headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from leadbridge.core.cli import app
from leadbridge.core.models import Event, Lead
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store

from ..conftest import need
from .test_reports import SPEND, history  # noqa: F401 - the hand-computed fixture history

runner = CliRunner()


@pytest.fixture
def config(history: Store, tmp_path: Path) -> tuple[Path, Path]:  # noqa: F811
    path = tmp_path / "lb.yaml"
    path.write_text(f"store: {history.url}\nlog_format: text\n", encoding="utf-8")
    spend = tmp_path / "spend.csv"
    spend.write_text(SPEND, encoding="utf-8")
    return path, spend


def run(config: tuple[Path, Path], *args: str) -> Any:
    path, spend = config
    return runner.invoke(
        app,
        [
            "--config",
            str(path),
            "report",
            "funnel",
            "--at",
            "2026-05-01",
            "--spend",
            str(spend),
            *args,
        ],
    )


def test_json_csv_and_table(config: tuple[Path, Path]) -> None:
    report = json.loads(run(config, "--format", "json").stdout)
    assert report["total"]["acceptance"]["rate"] == 0.6
    assert report["total"]["cost"]["lagged_per_sql"] == "150.00"
    rows = list(csv.DictReader(io.StringIO(run(config, "--format", "csv", "--by", "offer").stdout)))
    assert [r["group"] for r in rows] == ["total", "o.one", "o.two"]
    assert rows[0]["velocity_p90_days"] == "16.8" and rows[0]["sla_breaches"] == "1"
    table = run(config)
    assert table.exit_code == 0 and "funnel 2026-Q2" in table.output
    assert "SLA breach" in table.output


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
    config: tuple[Path, Path],
    history: Store,  # noqa: F811
) -> None:
    _hostile_group(history)
    exported = run(config, "--format", "csv", "--by", "offer")
    assert exported.exit_code == 0, exported.output
    groups = {r["group"]: r for r in csv.DictReader(io.StringIO(exported.stdout))}
    assert "'" + EVIL_OFFER in groups and EVIL_OFFER not in groups
    assert groups["total"]["lagged_cost_per_sql"] == "150.00"  # a figure, left a number

    for args in (["--by", "action"], ["--format", "json", "--by", "action"]):
        result = run(config, *args)
        assert result.exit_code == 0, result.output
        assert not [c for c in ("\x1b]0;", "\x07", "\u202e") if c in result.stdout], args
    report = json.loads(run(config, "--format", "json", "--by", "action").stdout)
    assert EVIL_ACTION in [g["group"] for g in report["groups"]]  # exact once decoded
    page = run(config, "--format", "html", "--by", "action")
    assert page.exit_code == 0 and "\x1b" not in page.stdout and "\u202e" not in page.stdout


def test_explicit_dates_and_usage_errors(config: tuple[Path, Path], tmp_path: Path) -> None:
    april = json.loads(
        run(config, "--from", "2026-04-01", "--to", "2026-04-30", "--format", "json").stdout
    )
    assert april["period"]["label"] == "2026-04-01..2026-04-30"
    assert april["total"]["stages"]["sql"] == 3  # a, b, e (d's SQL is in May)
    assert run(config, "--from", "2026-04-01").exit_code == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("date,amount\nyesterday,1\n", encoding="utf-8")
    result = runner.invoke(
        app, ["--config", str(config[0]), "report", "funnel", "--spend", str(bad)]
    )
    assert result.exit_code == 2 and "YYYY-MM-DD" in result.output


def test_the_html_page_renders_in_headless_chromium(
    config: tuple[Path, Path], tmp_path: Path
) -> None:
    page = tmp_path / "funnel.html"
    assert run(config, "--format", "html", "--by", "offer", "--output", str(page)).exit_code == 0
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
