"""Fit × engagement (issue 24, docs/scoring.md): two axes, decay with a half-life computed
from the actions' own times and an explicit `now`, the grid deciding MQL, marketing's
recycle. Property tests hold the model's promises for any history; examples pin the
worked example of docs/scoring.md."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadbridge.core.domain import stages
from leadbridge.core.domain.models import Lead, Stage
from leadbridge.core.domain.qualify import (
    EngagementRules,
    QualificationSettings,
    engagement,
    graded_score,
    record_touch,
    recycle_reason,
    score,
    stage_after_scoring,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
GRID = QualificationSettings(mql_when=["A1", "A2", "B1"], recycle_after=timedelta(days=45))
DAY = timedelta(days=1)

actions = st.sampled_from(["PLT", "Create", "INS", "StartTestDrive", "DNC", "SomethingNew"])
offsets = st.integers(min_value=0, max_value=400 * 24 * 3600)  # seconds after T0
histories = st.lists(st.tuples(actions, offsets), min_size=1, max_size=12)


def _lead(**fields: object) -> Lead:
    return Lead(**({"lead_key": "k", "offer_key": "o", "email": "jane@contoso.com"} | fields))


def _with(history: list[tuple[str, int]], **fields: object) -> Lead:
    """A lead built from timed actions, in the order given."""
    lead = _lead(**fields)
    for action, offset in history:
        at = T0 + timedelta(seconds=offset)
        if action not in lead.actions:
            lead.actions.append(action)
        lead.last_seen = max(filter(None, [lead.last_seen, at]))
        record_touch(lead, action, at)
    return lead


@settings(max_examples=150, deadline=None)
@given(history=histories, gaps=st.lists(st.integers(0, 200 * 24 * 3600), min_size=2, max_size=6))
def test_engagement_only_falls_while_nothing_happens(
    history: list[tuple[str, int]], gaps: list[int]
) -> None:
    lead = _with(history)
    rules = EngagementRules()
    last = max(at for _, at in lead.touches)
    moments = [last + timedelta(seconds=s) for s in sorted(gaps)]
    points = [engagement(lead.touches, rules, now)[0] for now in moments]
    assert points == sorted(points, reverse=True), (moments, points)


@settings(max_examples=150, deadline=None)
@given(history=histories, order=st.randoms(use_true_random=False), later=offsets)
def test_the_same_history_gives_the_same_score_whatever_the_processing_order(
    history: list[tuple[str, int]], order: object, later: int
) -> None:
    now = T0 + timedelta(seconds=later)
    shuffled = list(history)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    first, second = _with(history, title="CTO"), _with(shuffled, title="CTO")
    assert first.touches == second.touches
    assert graded_score(first, GRID, now) == graded_score(second, GRID, now)


@settings(max_examples=100, deadline=None)
@given(history=histories, later=offsets)
def test_processing_an_action_again_changes_nothing(
    history: list[tuple[str, int]], later: int
) -> None:
    now = T0 + timedelta(seconds=later)
    lead = _with(history, company="Contoso")
    before = graded_score(lead, GRID, now)
    again = _with(history + history, company="Contoso")
    assert again.touches == lead.touches
    assert graded_score(again, GRID, now) == before


@settings(max_examples=100, deadline=None)
@given(
    action=actions,
    age=st.integers(min_value=365, max_value=3650),
    half_life=st.integers(min_value=1, max_value=60),
    title=st.sampled_from([None, "CEO", "Engineer"]),
)
def test_a_lead_whose_only_action_is_a_year_old_is_level_4(
    action: str, age: int, half_life: int, title: str | None
) -> None:
    rules = QualificationSettings(engagement=EngagementRules(half_life=timedelta(days=half_life)))
    lead = _with([(action, 0)], title=title, company="Contoso")
    result = graded_score(lead, rules, T0 + age * DAY)
    assert result.level == 4
    assert result.grade is not None and result.grade.endswith("4")


def test_a_config_without_the_new_keys_scores_one_number_as_before() -> None:
    rules = QualificationSettings()
    assert not rules.graded
    lead = _with([("INS", 0), ("Create", 60)], company="Contoso", title="CTO")
    result = score(lead, rules, T0 + 400 * DAY)  # time plays no part in the one number
    assert (result.points, result.grade, result.fit, result.engagement) == (60, None, None, None)
    assert result.rules[0] == "action Create (+30)"


def test_the_worked_example_a_trial_today_is_a1_and_fades_to_a3_in_thirty_days() -> None:
    """docs/scoring.md: a CTO of Contoso takes a trial."""
    lead = _with([("Create", 0)], company="Contoso", title="CTO")
    today = graded_score(lead, GRID, T0)
    assert (today.grade, today.fit, today.engagement) == ("A1", 20, 40)
    assert today.rules == [
        "grade A1",
        "fit: company given (+5)",
        f"fit: title matches {GRID.fit_rules.titles[0].pattern!r} (+15)",
        "engagement: action Create, 0d ago (+30)",
        "engagement: action within 7d (+10)",
    ]
    assert stage_after_scoring(lead, today, GRID) is Stage.MQL
    month = graded_score(lead, GRID, T0 + 30 * DAY)
    assert (month.grade, month.engagement) == ("A3", 15)  # 30 × ½, the recency bonus gone


def test_repeats_count_decayed_and_capped() -> None:
    rules = EngagementRules()
    touches = [("INS", T0 + i * DAY) for i in range(6)]
    points, fired = engagement(touches, rules, T0 + 5 * DAY)
    # the newest install in full, three more at 10 each (decayed by 1-3 days), recency 10
    assert 25 + 10 + 3 * 10 * 0.5 ** (3 / 30) < points <= 25 + 10 + 30
    assert [name.split(",")[0] for name, _ in fired] == [
        "action INS",
        "repeat engagement x3",
        "action within 7d",
    ]


def test_the_grid_decides_and_contact_me_stays_an_mql_at_once() -> None:
    gmail = {"email": "jane@gmail.com"}
    trial = _with([("Create", 0)], **gmail)  # fit -10: grade D
    result = graded_score(trial, GRID, T0)
    assert result.grade == "D1"
    assert stage_after_scoring(trial, result, GRID) is None
    contact_me = _with([("PLT", 0)], **gmail)
    assert stage_after_scoring(contact_me, graded_score(contact_me, GRID, T0), GRID) is Stage.MQL
    dnc = _with([("DNC", 0)], do_not_contact=True, company="Contoso", title="CEO")
    assert stage_after_scoring(dnc, graded_score(dnc, GRID, T0), GRID) is None


def test_mql_at_stays_a_shortcut_on_fit_plus_engagement_without_a_grid() -> None:
    rules = QualificationSettings(fit={}, mql_at=45)  # graded, no mql_when
    lead = _with([("Create", 0)], company="Contoso")  # fit 5 + engagement 40
    result = graded_score(lead, rules, T0)
    assert result.points == 45 and stage_after_scoring(lead, result, rules) is Stage.MQL
    assert stage_after_scoring(lead, graded_score(lead, rules, T0 + 8 * DAY), rules) is None


def test_fit_takes_any_mapped_attribute_and_the_configured_countries() -> None:
    rules = QualificationSettings(
        fit={
            "countries": {"DE": 10},
            "attributes": [
                {"field": "attribution.industry", "equals": ["Manufacturing"], "points": 10},
                {"field": "company", "pattern": r"(?i)\bgmbh\b", "points": 5},
            ],
        }
    )
    lead = _with(
        [("INS", 0)],
        country="DE",
        company="Bäckerei GmbH",
        attribution={"industry": "manufacturing"},
    )
    result = graded_score(lead, rules, T0)
    assert result.fit == 5 + 10 + 10 + 5 and result.grade == "A2"
    assert "fit: attribution.industry is Manufacturing (+10)" in result.rules


@pytest.mark.parametrize(
    "bad",
    [
        {"mql_when": ["E1"]},
        {"mql_when": ["A5"]},
        {"fit": {"grades": {"A": 5, "B": 10}}},
        {"engagement": {"levels": {"1": 5, "2": 10}}},
        {"engagement": {"half_life": "0d"}},
        {"fit": {"attributes": [{"field": "shoe_size", "points": 5}]}},
        {"fit": {"attributes": [{"field": "title", "pattern": "(", "points": 5}]}},
    ],
)
def test_a_wrong_scoring_config_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        QualificationSettings.model_validate(bad)


def test_recycle_only_an_unaccepted_mql_at_level_4_after_recycle_after() -> None:
    lead = _with([("Create", 0)], company="Contoso", title="CTO", stage=Stage.MQL)
    at_60 = graded_score(lead, GRID, T0 + 60 * DAY)
    assert at_60.level == 4
    why = recycle_reason(lead, at_60, GRID, T0, T0 + 60 * DAY)
    assert why is not None and "recycle_after 45d" in why and "level 4" in why
    # became an MQL only 30 days ago: not yet
    assert recycle_reason(lead, at_60, GRID, T0 + 30 * DAY, T0 + 60 * DAY) is None
    # still engaged: not recycled
    at_10 = graded_score(lead, GRID, T0 + 10 * DAY)
    assert recycle_reason(lead, at_10, GRID, T0, T0 + 10 * DAY) is None
    # sales accepted it: never marketing's to move
    lead.stage = Stage.SQL
    assert recycle_reason(lead, at_60, GRID, T0, T0 + 60 * DAY) is None
    # not configured: never
    lead.stage = Stage.MQL
    no_recycle = QualificationSettings(mql_when=["A1"])
    assert recycle_reason(lead, at_60, no_recycle, T0, T0 + 60 * DAY) is None


def test_recycling_is_marketings_backward_move_under_the_stage_rules() -> None:
    decision = stages.recycle(Stage.MQL, "stale")
    assert decision.apply and "owns mql" in decision.reason and "stale" in decision.reason
    for stage in (Stage.SQL, Stage.OPPORTUNITY, Stage.DISQUALIFIED, Stage.LEAD):
        assert not stages.recycle(stage, "stale").apply


def test_an_action_in_the_future_of_now_counts_as_new() -> None:
    points, _ = engagement([("Create", T0 + DAY)], EngagementRules(), T0)
    assert points == 40


def test_a_lead_stored_before_times_were_kept_decays_from_its_last_action() -> None:
    lead = _lead(actions=["INS"], last_seen=T0, company="Contoso")
    assert graded_score(lead, GRID, T0 + 60 * DAY).engagement == 6  # 25 × ¼
