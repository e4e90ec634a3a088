"""The funnel report against a fixture history whose figures were computed by hand."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from leadbridge.core.domain.models import Event, Lead, RawLead, Stage
from leadbridge.core.ingest import pipeline
from leadbridge.core.reports import funnel as reports
from leadbridge.core.settings import Settings
from leadbridge.core.store import dialect, repo
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import events, leads, raw_leads


def t(month: int, day: int, hour: int = 0) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


# key → (first action, its time, offer, stage moves [(when, from, to, actor)], refused touches)
HISTORY = {
    # Contact me; sales accepts 48 h later (an SLA breach), 2 days MQL → SQL.
    "a": (
        "PLT",
        t(4, 1, 10),
        "o.one",
        [(t(4, 1, 10), "lead", "mql", "leadbridge"), (t(4, 3, 10), "mql", "sql", "sales")],
        [],
    ),
    # Install; MQL on the 10th, accepted 20 days later.
    "b": (
        "INS",
        t(4, 5),
        "o.one",
        [(t(4, 10), "lead", "mql", "leadbridge"), (t(4, 30), "mql", "sql", "sales")],
        [],
    ),
    # Contact me; a marketer's refused change 3 h later is a touch (within the SLA); no SQL.
    "c": ("PLT", t(4, 7, 9), "o.two", [(t(4, 7, 9), "lead", "mql", "leadbridge")], [t(4, 7, 12)]),
    # Accepted after 4 days, recycled, MQL again, accepted again: counted once each.
    "d": (
        "INS",
        t(4, 28),
        "o.two",
        [
            (t(5, 1), "lead", "mql", "leadbridge"),
            (t(5, 5), "mql", "sql", "sales"),
            (t(5, 10), "sql", "lead", "sales"),
            (t(5, 20), "lead", "mql", "leadbridge"),
            (t(5, 22), "mql", "sql", "d365"),
        ],
        [],
    ),
    # MQL before the quarter, SQL in it: an SQL of the period, not of its MQL cohort.
    "e": (
        "INS",
        t(3, 20),
        "o.one",
        [(t(3, 25), "lead", "mql", "leadbridge"), (t(4, 2), "mql", "sql", "sales")],
        [],
    ),
    # MQL, then disqualified by sales.
    "f": (
        "INS",
        t(4, 11),
        "o.two",
        [(t(4, 12), "lead", "mql", "leadbridge"), (t(4, 15), "mql", "disqualified", "sales")],
        [],
    ),
    # A do-not-contact lead.
    "g": ("DNC", t(4, 2), "o.one", [], []),
}
SPEND = (
    "date,amount,offer\n2026-03-01,100,o.one\n2026-03-20,300,o.one\n2026-04-10,400,o.one\n"
    "2026-05-15,200,o.two\n2026-06-25,1000,o.two\n"
)


@pytest.fixture
def history(store: Store) -> Store:
    return _write_history(store)


def _write_history(store: Store) -> Store:
    with store.begin() as conn:
        for key, (action, at, offer, moves, touches) in HISTORY.items():
            lead_key = key * 32
            final = Stage(moves[-1][2]) if moves else Stage.LEAD
            repo.save_leads(
                conn,
                [
                    Lead(
                        lead_key=lead_key,
                        offer_key=offer,
                        email=f"{key}@x.io",
                        first_seen=at,
                        last_seen=at,
                        first_action=action,
                        actions=[action],
                        stage=final,
                        do_not_contact=action == "DNC",
                        channel="appsource",
                    )
                ],
                at,
            )
            repo.land(
                conn,
                [RawLead(source="hook", source_key=key, kind="https", payload={}, occurred_at=at)],
                at,
            )
            conn.execute(
                raw_leads.update()
                .where(raw_leads.c.source_key == key)
                .values(lead_key=lead_key, status="processed")
            )
            repo.add_events(
                conn,
                [
                    Event(
                        lead_key=lead_key,
                        kind="action",
                        actor="hook",
                        at=at,
                        data={"action": action},
                    )
                ],
            )
            repo.add_events(
                conn,
                [
                    Event(
                        lead_key=lead_key,
                        kind="stage",
                        actor=actor,
                        at=when,
                        data={"from": frm, "to": to},
                    )
                    for when, frm, to, actor in moves
                ],
            )
            repo.add_events(
                conn,
                [
                    Event(
                        lead_key=lead_key,
                        kind="stage_refused",
                        actor="marketing",
                        at=when,
                        data={"stage": "sql"},
                    )
                    for when in touches
                ],
            )
        repo.land(
            conn,
            [
                RawLead(
                    source="hook", source_key="test", kind="https", payload={}, occurred_at=t(4, 20)
                )
            ],
            t(4, 20),
        )
        test_raw = conn.execute(
            select(raw_leads.c.id).where(raw_leads.c.source_key == "test")
        ).scalar_one()
        repo.add_quarantine(
            conn,
            [
                {
                    "raw_lead_id": test_raw,
                    "reason": "test",
                    "field": None,
                    "message": "MSFT_TEST_",
                    "fix": "",
                    "at": t(4, 20),
                }
            ],
        )
    return store


def _report(store: Store, tmp_path: Path, **kw: object) -> dict:
    spend_file = tmp_path / "spend.csv"
    spend_file.write_text(SPEND, encoding="utf-8")
    with store.connect() as conn:
        return reports.funnel(
            conn,
            reports.period_for("quarter", date(2026, 5, 1)),
            spend=reports.read_spend(spend_file),
            **kw,
        )


def test_the_quarter_by_hand(history: Store, tmp_path: Path) -> None:
    report = _report(history, tmp_path)
    total = report["total"]
    assert report["period"]["label"] == "2026-Q2"
    # raw: a, b, c, d, f, g and the test lead are in Q2 (e is March): 7; unique: 6.
    assert (total["raw_leads"], total["unique_leads"], total["test_leads"], total["dnc_leads"]) == (
        7,
        6,
        1,
        1,
    )
    assert total["stages"] == {
        "mql": 5,
        "sql": 4,
        "opportunity": 0,
        "customer": 0,
        "recycled": 1,
        "disqualified": 1,
    }
    # Cohort a b c d f; accepted a b d → 3 / 5.
    assert total["acceptance"] == {"mql": 5, "accepted": 3, "rate": 0.6}
    # Days 2, 20, 4 → mean 26/3, median 4, p90 = 4 + (20 - 4) × 0.8 = 16.8.
    velocity = total["velocity_days"]
    assert (velocity["mean"], velocity["median"], velocity["p90"]) == (8.6667, 4.0, 16.8)
    # Contact me: a (touched after 48 h: breach) and c (3 h: within).
    sla = total["sla"]
    assert (sla["contact_me"], sla["within"], sla["share"]) == (2, 1, 0.5)
    assert sla["breaches"] == [
        {
            "lead_key": "a" * 32,
            "name": None,
            "company": None,
            "email": "a***@x.io",
            "offer": "o.one",
            "offer_title": None,
            "asked_at": t(4, 1, 10).isoformat(),
            "due_by": t(4, 2, 10).isoformat(),
            "first_touch_at": t(4, 3, 10).isoformat(),
            "hours": 48.0,
        }
    ]
    assert sla["open"] == []
    # Spend Apr 10 + May 15 + Jun 25 = 1600 for 4 SQLs; lagged by round(8.67) = 9 days:
    # Mar 23 .. Jun 22 → 400 + 200 = 600.
    assert total["cost"] == {
        "spend": "1600",
        "sqls": 4,
        "per_sql": "400.00",
        "lag_days": 9,
        "lagged_spend": "600",
        "lagged_per_sql": "150.00",
    }


def test_grouped_by_offer_and_by_accepting_crm(history: Store, tmp_path: Path) -> None:
    by_offer = {g["group"]: g for g in _report(history, tmp_path, by="offer")["groups"]}
    assert by_offer["o.one"]["stages"]["sql"] == 3  # a, b, e
    assert by_offer["o.two"]["acceptance"] == {"mql": 3, "accepted": 1, "rate": 0.3333}
    assert by_offer["o.one"]["cost"]["spend"] == "400"  # offer-specific spend only
    by_target = {g["group"]: g for g in _report(history, tmp_path, by="target")["groups"]}
    assert set(by_target) == {"sales", "not accepted"}  # d was first accepted by sales


def test_a_period_without_mqls_or_spend_says_not_available(history: Store, tmp_path: Path) -> None:
    with history.connect() as conn:
        report = reports.funnel(
            conn,
            reports.period_for("quarter", date(2026, 10, 1)),
            spend=[reports.Spend(date(2026, 1, 1), Decimal(5), None)],
        )
    total = report["total"]
    assert total["acceptance"]["rate"] is None and total["velocity_days"]["mean"] is None
    assert total["cost"]["per_sql"] is None and total["cost"]["spend"] == "0"
    assert total["sla"]["share"] is None
    assert len(total["weekly"]) == 14 and all(w["mql"] == 0 for w in total["weekly"])


def test_periods() -> None:
    assert reports.period_for("half", date(2026, 8, 9)).label == "2026-H2"
    year = reports.period_for("year", date(2026, 8, 9))
    assert (year.start.month, year.end.year) == (1, 2027)
    december = reports.period_for("month", date(2026, 12, 31))
    assert december.end == datetime(2027, 1, 1, tzinfo=UTC)
    assert reports.period_between(date(2026, 1, 1), date(2026, 1, 31)).end.day == 1


def test_spend_file_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "spend.csv"
    bad.write_text("date,amount\n2026-01-01,ten\n", encoding="utf-8")
    with pytest.raises(reports.SpendFileError, match=r"spend.csv:2: amount 'ten'"):
        reports.read_spend(bad)
    bad.write_text("day,cost\n", encoding="utf-8")
    with pytest.raises(reports.SpendFileError, match="header"):
        reports.read_spend(bad)


def test_raw_leads_without_a_usable_email_are_counted_not_leads(
    store: Store, settings: Settings
) -> None:
    """Quarantined as invalid_email by the pipeline: raw leads of the period, never leads."""
    bodies = [
        {"LeadSource": "AzureMarketplace-INS|c.o", "UserDetails": {"Email": "ana@contoso.com"}},
        {"LeadSource": "AzureMarketplace-INS|c.o", "UserDetails": {"FirstName": "Edu"}},
        {"LeadSource": "AzureMarketplace-INS|c.o", "UserDetails": {"Email": "not-an-email"}},
    ]
    for i, body in enumerate(bodies):
        raw = RawLead(source="hook", source_key=str(i), kind="https", payload=body)
        pipeline.land_one(store, replace(raw, occurred_at=t(4, 9)))
    pipeline.process_pending(store, settings)
    with store.connect() as conn:
        report = reports.funnel(conn, reports.period_for("quarter", date(2026, 5, 1)), by="offer")
    total = report["total"]
    assert (total["raw_leads"], total["unique_leads"], total["invalid_email_leads"]) == (3, 1, 2)
    assert total["test_leads"] == 0
    assert [(g["group"], g["raw_leads"], g["invalid_email_leads"]) for g in report["groups"]] == [
        ("c.o", 1, 0)  # no lead, so no offer to count them under
    ]


def _contact_me(store: Store, key: str, at: datetime, **person: str) -> None:
    """One more Contact-me lead, asked at `at`, nobody touched it yet."""
    lead = Lead(
        lead_key=key * 32,
        offer_key="o.two",
        offer_title="Contoso Two",
        email=f"{key}.person@contoso.com",
        first_seen=at,
        last_seen=at,
        first_action="PLT",
        actions=["PLT"],
        stage=Stage.MQL,
        **person,
    )
    with store.begin() as conn:
        repo.save_leads(conn, [lead], at)
        repo.add_events(
            conn,
            [
                Event(
                    lead_key=lead.lead_key,
                    kind="action",
                    actor="hook",
                    at=at,
                    data={"action": "PLT"},
                )
            ],
        )


def test_a_contact_me_lead_inside_its_window_is_open_not_a_breach(history: Store) -> None:
    """Two minutes after the customer asked, nobody is late: the lead is open, listed with who
    it is and when it is due; 25 hours after, untouched, it is a breach."""
    now = t(5, 20, 12)
    _contact_me(
        history,
        "h",
        datetime(2026, 5, 20, 11, 58, tzinfo=UTC),
        first_name="Ana",
        last_name="Pereira",
        company="Fabrikam",
    )
    _contact_me(history, "i", t(5, 19, 11), first_name="Lars", last_name="Jensen")
    with history.connect() as conn:
        report = reports.funnel(conn, reports.period_for("quarter", now.date()), now=now)
    sla = report["total"]["sla"]
    assert report["as_of"] == now.isoformat()
    assert [o["lead_key"] for o in sla["open"]] == ["h" * 32]
    [fresh] = sla["open"]
    assert fresh == {
        "lead_key": "h" * 32,
        "name": "Ana Pereira",
        "company": "Fabrikam",
        "email": "h***@contoso.com",  # a report is passed around: the address is masked
        "offer": "o.two",
        "offer_title": "Contoso Two",
        "asked_at": "2026-05-20T11:58:00+00:00",
        "due_by": "2026-05-21T11:58:00+00:00",
        "hours_left": 23.97,
    }
    late = {b["lead_key"]: b for b in sla["breaches"]}
    assert set(late) == {"a" * 32, "i" * 32}
    assert late["i" * 32]["first_touch_at"] is None and late["i" * 32]["name"] == "Lars Jensen"
    # a (late), c (on time), h (open), i (never touched): the share is of the decided ones.
    assert (sla["contact_me"], sla["within"], sla["share"]) == (4, 1, round(1 / 3, 4))
    rows = reports.follow_up_rows(sla)
    assert [(r["status"], r["lead_key"][0]) for r in rows] == [
        ("breach", "a"),
        ("breach", "i"),
        ("open", "h"),
    ]


def test_a_touch_after_now_is_not_known_yet(history: Store) -> None:
    """Judged as of an earlier moment, c's touch (3 h after asking) has not happened yet:
    c is open then, and within once the touch is in the past."""
    period = reports.period_for("quarter", date(2026, 5, 1))
    with history.connect() as conn:
        before = reports.funnel(conn, period, now=t(4, 7, 10))["total"]["sla"]
        after = reports.funnel(conn, period, now=t(4, 7, 13))["total"]["sla"]
    assert [o["lead_key"] for o in before["open"]] == ["c" * 32]
    assert after["open"] == [] and after["within"] == 1


def _active(store: Store, month: int) -> set[str]:
    """The leads of `HISTORY` (by letter) whose histories the month's report reads."""
    with store.connect() as conn:
        period = reports.period_for("month", date(2026, month, 1))
        return {key[0] for key in reports.active_lead_keys(conn, period)}


def test_a_period_reads_the_histories_of_its_own_leads_only(history: Store) -> None:
    """First seen, acting or moved in the period, or a raw lead in it: e, first seen in March,
    is April's too (sales accepted it on the 2nd); May is d's alone (b was accepted on 30
    April); h's only trace in June is a raw lead; nobody did anything in July."""
    with history.begin() as conn:
        h = Lead(lead_key="h" * 32, offer_key="o.one", email="h@x.io", first_seen=t(3, 1))
        repo.save_leads(conn, [h], t(3, 1))
        raw = RawLead(source="hook", source_key="h", kind="https", payload={}, occurred_at=t(6, 9))
        repo.land(conn, [raw], t(6, 9))
        conn.execute(
            raw_leads.update().where(raw_leads.c.source_key == "h").values(lead_key=h.lead_key)
        )
    assert _active(history, 3) == {"e", "h"}
    assert _active(history, 4) == set("abcdefg")
    assert _active(history, 5) == {"d"}
    assert _active(history, 6) == {"h"}
    assert _active(history, 7) == set()


def _quiet(group: dict) -> bool:
    """A group with nothing in the period: the report of every lead's history listed it."""
    counted = [group[k] for k in ("raw_leads", "unique_leads", "test_leads", "dnc_leads")]
    return (
        not any(counted)
        and not any(group["stages"].values())
        and group["sla"]["contact_me"] == 0
        and not any(w["mql"] or w["sql"] for w in group["weekly"])
    )


def _same_as_every_history(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each month from March to July and the quarter, total and groups, are the report read
    from every lead's history — but for the groups with nothing in the period, which that
    report listed, all zeros, and this one leaves out."""
    spend_file = tmp_path / "spend.csv"
    spend_file.write_text(SPEND, encoding="utf-8")
    spend = reports.read_spend(spend_file)
    periods = [reports.period_for("month", date(2026, m, 1)) for m in range(3, 8)]
    periods.append(reports.period_for("quarter", date(2026, 5, 1)))
    groupings = (None, *reports.GROUPINGS)

    def reported() -> list[dict]:
        with store.connect() as conn:
            return [
                reports.funnel(conn, period, by=by, spend=spend, now=t(7, 1))
                for by in groupings
                for period in periods
            ]

    ours = reported()
    with store.connect() as conn:
        everyone = set(conn.execute(select(leads.c.lead_key)).scalars())
    monkeypatch.setattr(reports, "active_lead_keys", lambda _conn, _period: everyone)
    for mine, every in zip(ours, reported(), strict=True):
        label = (mine["by"], mine["period"]["label"])
        assert mine["total"] == every["total"], label
        listed = {group["group"]: group for group in every["groups"]}
        for group in mine["groups"]:
            assert group == listed.pop(group["group"]), label
        assert all(_quiet(group) for group in listed.values()), (label, listed)


def test_the_figures_are_those_of_every_lead_s_history(
    history: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _same_as_every_history(history, tmp_path, monkeypatch)


def test_the_figures_are_those_of_every_lead_s_history_on_postgresql(
    pg_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the keys go in lists (core/store/dialect.py), here of two: a lead's events
    are all in its list's statement, in order."""
    monkeypatch.setattr(dialect, "PG_LIST", 2)
    _same_as_every_history(_write_history(pg_store), tmp_path, monkeypatch)


def test_by_offer_lists_an_offer_with_spend_and_no_lead_in_the_period(history: Store) -> None:
    """Money spent on an offer that brought nothing in the period is what cost per SQL is
    there to show: the spend file's offers are groups even without a lead."""
    spend = [reports.Spend(date(2026, 5, 3), Decimal(250), "o.three")]
    with history.connect() as conn:
        report = reports.funnel(
            conn, reports.period_for("month", date(2026, 5, 1)), by="offer", spend=spend
        )
    groups = {group["group"]: group for group in report["groups"]}
    assert set(groups) == {"o.two", "o.three"}  # d's offer; o.one had nothing in May
    assert groups["o.three"]["cost"]["spend"] == "250" and groups["o.three"]["cost"]["sqls"] == 0
    assert groups["o.three"]["stages"]["mql"] == 0


def _report_while_a_lead_arrives(
    store: Store, reading: str, monkeypatch: pytest.MonkeyPatch
) -> dict:
    """The quarter's report, with a Contact-me lead of the quarter landed, processed and
    committed by another connection after the report chose its leads, before it counted
    the raw leads: an ingest running while the report is read."""
    arrive = iter([lambda: _arrives(store)])
    read_histories = reports.load_histories

    def late(conn, keys):
        next(arrive, lambda: None)()
        return read_histories(conn, keys)

    monkeypatch.setattr(reports, "load_histories", late)
    with getattr(store, reading)() as conn:
        return reports.funnel(conn, reports.period_for("quarter", date(2026, 5, 1)), now=t(7, 1))


def _arrives(store: Store) -> None:
    _contact_me(store, "z", t(5, 2))
    with store.begin() as conn:
        repo.land(
            conn,
            [RawLead(source="hook", source_key="z", kind="https", payload={}, occurred_at=t(5, 2))],
            t(5, 2),
        )
        conn.execute(
            raw_leads.update()
            .where(raw_leads.c.source_key == "z")
            .values(lead_key="z" * 32, status="processed")
        )


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_report_counts_one_moment_while_leads_arrive(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read from a snapshot (as the CLI, the console and the alerts read it), the report is
    the one of the moment it began; read statement by statement, the same arrival made it
    count a raw lead whose lead it never read."""
    store = _write_history(request.getfixturevalue("store" if kind == "sqlite" else "pg_store"))
    with store.connect() as conn:
        before = reports.funnel(conn, reports.period_for("quarter", date(2026, 5, 1)), now=t(7, 1))
    torn = _report_while_a_lead_arrives(store, "connect", monkeypatch)["total"]
    assert (torn["raw_leads"], torn["unique_leads"]) == (
        before["total"]["raw_leads"] + 1,
        before["total"]["unique_leads"],
    )
    monkeypatch.undo()
    with store.begin() as conn:  # the arrival undone, to be made again under a snapshot
        conn.execute(raw_leads.delete().where(raw_leads.c.source_key == "z"))
        conn.execute(leads.delete().where(leads.c.lead_key == "z" * 32))
        conn.execute(events.delete().where(events.c.lead_key == "z" * 32))
    assert _report_while_a_lead_arrives(store, "snapshot", monkeypatch) == before
