"""The daily rescore (core/sync/rescore.py): grades fall as engagement decays, each change is
an event and one queued push, a quiet day changes nothing, a stale MQL is recycled by
marketing, one lead's failure doesn't stop the others, and a config without fit ×
engagement is left exactly alone. The `leadbridge rescore` command and `leads list --grade`
are checked here too, with their exit codes."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import delete, select

from leadbridge.core.domain import identity, qualify
from leadbridge.core.domain.models import Lead, RawLead, Stage
from leadbridge.core.ingest import pipeline
from leadbridge.core.reports import funnel
from leadbridge.core.settings import Settings, load_settings
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.store.tables import events, leads, outbox
from leadbridge.core.sync import rescore as rescore_module
from leadbridge.core.sync.rescore import rescore
from tests.clihelp import EXIT_ATTENTION, EXIT_USAGE, run_cli

HOOK = {
    "name": "hook",
    "kind": "webhook",
    "url": "https://example.com/leads",
    "secret": "s3cr3t-key",
}
SCORING = {
    "mql_when": ["A1", "A2", "B1"],
    "recycle_after": "45d",
    "engagement": {"levels": {1: 40, 2: 20, 3: 12}},  # as YAML reads `{1: 40}`
}
DAY = timedelta(days=1)


def _settings(tmp: Path, qualification: dict[str, Any] | None = None) -> Settings:
    extra = {"qualification": qualification} if qualification is not None else {}
    return load_settings(None, store=f"sqlite:///{tmp / 'lb.db'}", targets=[HOOK], **extra)


def _trial(email: str, title: str, at: datetime, n: int = 0) -> RawLead:
    """A trial (Create) taken at `at`: Azure portal payload shape (docs/reference)."""
    payload = {
        "LeadSource": "AzurePortal-Create|contoso.analytics",
        "ActionCode": "Create",
        "UserDetails": {"Email": email, "Company": "Contoso", "Title": title},
    }
    return RawLead(
        source="hook", source_key=f"{email}{n}", kind="https", payload=payload, occurred_at=at
    )


def _ingest(store: Store, settings: Settings, *raws: RawLead) -> None:
    for raw in raws:
        pipeline.land_one(store, raw)
    pipeline.process_pending(store, settings)


def _lead(store: Store, email: str) -> Lead:
    key = identity.lead_key(email, "contoso.analytics")
    with store.connect() as conn:
        return repo.load_leads(conn, [key])[key]


def _drain(store: Store) -> int:
    """What the outbox held (as if delivered), emptied."""
    with store.begin() as conn:
        return conn.execute(delete(outbox)).rowcount


def _events(store: Store, kind: str) -> list[Any]:
    with store.connect() as conn:
        return list(conn.execute(select(events).where(events.c.kind == kind).order_by(events.c.id)))


@pytest.fixture
def world(tmp_path: Path) -> tuple[Store, Settings, datetime]:
    settings = _settings(tmp_path, SCORING)
    store = Store(settings.store)
    now = utcnow()
    _ingest(
        store,
        settings,
        _trial("cto@contoso.com", "CTO", now),
        _trial("dev@contoso.com", "Developer", now),
    )
    return store, settings, now


def test_a_trial_today_is_an_a1_mql_and_a_quiet_month_lowers_it_once(world: Any) -> None:
    store, settings, now = world
    cto = _lead(store, "cto@contoso.com")
    assert (cto.grade, cto.fit, cto.engagement, cto.stage) == ("A1", 20, 40, Stage.MQL)
    with store.connect() as conn:
        graded = conn.execute(select(leads.c.grade).where(leads.c.lead_key == cto.lead_key))
        assert graded.scalar_one() == "A1"
    assert _drain(store) == 2
    assert rescore(store, settings, now=now).regraded == 0  # nothing has happened yet
    report = rescore(store, settings, now=now + 30 * DAY)
    assert (report.scanned, report.regraded, report.queued) == (2, 2, 2)
    assert report.grades[cto.lead_key] == "A1→A3"
    cto = _lead(store, "cto@contoso.com")
    assert (cto.grade, cto.engagement, cto.stage) == ("A3", 15, Stage.MQL)
    change = _events(store, "grade")[0]
    assert change.data["from"] == "A1" and change.data["to"] == "A3"
    assert change.at == now + 30 * DAY
    assert _drain(store) == 2
    again = rescore(store, settings, now=now + 30 * DAY + timedelta(hours=6))
    assert (again.regraded, again.queued) == (0, 0)  # the grade holds: nothing to tell a CRM
    assert _drain(store) == 0


def test_an_unaccepted_mql_at_level_4_is_recycled_after_45_days(world: Any) -> None:
    store, settings, now = world
    _drain(store)
    report = rescore(store, settings, now=now + 46 * DAY)  # 30 × ½^(46/30) = 10.3 < 12
    assert report.recycled == 1
    cto = _lead(store, "cto@contoso.com")
    assert (cto.stage, cto.grade) == (Stage.LEAD, "A4")
    move = _events(store, "stage")[-1]
    assert (move.actor, move.data["from"], move.data["to"]) == ("leadbridge", "mql", "lead")
    assert "backward move by marketing" in move.data["reason"]
    assert "recycle_after 45d" in move.data["reason"]
    assert _drain(store) == 2
    assert rescore(store, settings, now=now + 47 * DAY).recycled == 0  # nurture now


def test_sales_accepted_leads_are_never_rescored(world: Any) -> None:
    store, settings, now = world
    cto = _lead(store, "cto@contoso.com")
    cto.stage = Stage.SQL
    with store.begin() as conn:
        repo.save_leads(conn, [cto], now)
    report = rescore(store, settings, now=now + 90 * DAY)
    assert report.scanned == 1 and _lead(store, "cto@contoso.com").grade == "A1"


def test_one_lead_failing_to_rescore_leaves_the_others_done(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, settings, now = world
    real = qualify.graded_score

    def fragile(lead: Lead, rules: Any, at: datetime | None) -> qualify.Score:
        if lead.title == "CTO":
            raise ZeroDivisionError
        return real(lead, rules, at)

    monkeypatch.setattr(rescore_module.qualify, "graded_score", fragile)
    report = rescore(store, settings, now=now + 30 * DAY, batch_size=1)
    assert (report.failed, report.regraded) == (1, 1)
    assert report.needs_attention and "ZeroDivisionError" in report.problems[0]
    assert _lead(store, "cto@contoso.com").grade == "A1"
    assert _lead(store, "dev@contoso.com").grade == "C3"


def test_a_config_without_the_scoring_keys_is_left_alone(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    store = Store(settings.store)
    now = utcnow()
    _ingest(store, settings, _trial("cto@contoso.com", "CTO", now))
    cto = _lead(store, "cto@contoso.com")
    assert (cto.grade, cto.fit, cto.engagement, cto.score) == (None, None, None, 50)
    assert cto.touches  # times are kept all the same, for the day scoring is turned on
    report = rescore(store, settings, now=now + 365 * DAY)
    assert (report.scanned, report.regraded) == (0, 0)
    assert not settings.target("hook").fields  # no score fields added to the map


def test_the_score_fields_join_each_targets_map_only_when_configured(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        store=f"sqlite:///{tmp_path / 'lb.db'}",
        targets=[HOOK | {"fields": {"engagement": None, "fit": "score"}}],
        qualification={"mql_when": ["A1"]},
    )
    assert settings.target("hook").fields == {"grade": "grade", "fit": "score", "engagement": None}


def test_rescore_and_leads_list_by_grade_on_the_command_line(tmp_path: Path, world: Any) -> None:
    _store, settings, now = world
    config = tmp_path / "leadbridge.yaml"
    config.write_text(
        yaml.safe_dump({"store": settings.store, "targets": [HOOK], "qualification": SCORING}),
        encoding="utf-8",
    )
    later = (now + 30 * DAY).isoformat()
    out = run_cli(["--config", config, "rescore", "--now", later, "--format", "json"])
    assert '"regraded": 2' in out.stdout
    listed = run_cli(["--config", config, "leads", "list", "--grade", "a3", "--format", "csv"])
    assert "cto@contoso.com" in listed.stdout and "dev@contoso.com" not in listed.stdout
    assert run_cli(["--config", config, "leads", "list", "--grade", "C"]).stdout.count("C3") == 1
    run_cli(["--config", config, "leads", "list", "--grade", "E1"], expect=EXIT_USAGE)
    run_cli(["--config", config, "rescore", "--now", "next tuesday"], expect=EXIT_USAGE)


def test_rescore_exits_1_when_a_lead_failed(
    tmp_path: Path, world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _store, settings, _now = world
    config = tmp_path / "leadbridge.yaml"
    config.write_text(
        yaml.safe_dump({"store": settings.store, "qualification": SCORING}), encoding="utf-8"
    )

    def broken(lead: Lead, rules: Any, at: datetime | None) -> qualify.Score:
        raise ValueError

    monkeypatch.setattr(rescore_module.qualify, "graded_score", broken)
    out = run_cli(["--config", config, "rescore"], expect=EXIT_ATTENTION)
    assert "2 failed" in out.stdout


def test_the_funnel_by_grade_groups_leads_by_their_grade_on_becoming_an_mql(world: Any) -> None:
    store, settings, now = world
    rescore(store, settings, now=now + 30 * DAY)  # the CTO is A3 now, but was A1 as an MQL
    with store.connect() as conn:
        report = funnel.funnel(conn, funnel.period_between(now.date(), now.date()), by="grade")
    groups = {g["group"]: g["stages"] for g in report["groups"]}
    assert set(groups) == {"A1", "C3"}  # the developer never became one: its grade now
    assert groups["A1"]["mql"] == 1 and groups["C3"]["mql"] == 0


def test_the_daemon_rescores_daily_only_with_fit_and_engagement(world: Any, tmp_path: Path) -> None:
    from leadbridge.core.app.engines.jobs import Jobs

    store, settings, _ = world
    woken: list[str] = []
    jobs = Jobs(settings, store, threading.Event(), wake=lambda job, _at: woken.append(job))
    assert {s.job_id: s.every for s in jobs.schedules()}["rescore"] == DAY
    jobs.run("rescore")  # now: nothing has faded yet
    assert woken == []
    plain = Jobs(_settings(tmp_path / "plain"), store, threading.Event(), wake=lambda *_: None)
    assert "rescore" not in {s.job_id for s in plain.schedules()}
