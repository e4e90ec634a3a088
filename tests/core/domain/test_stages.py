"""The stage rules: forward from anyone who pulls, backward only from an owner, echoes ignored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from leadbridge.core.domain.models import Stage, StageChange
from leadbridge.core.domain.stages import SALES_STAGES, Policy, decide, rank, winner

T0 = datetime(2026, 5, 1, tzinfo=UTC)
SALES = Policy("sales", pulls=True, owns=frozenset(SALES_STAGES))
MARKETING = Policy("marketing", pulls=True, owns=frozenset())
PUSH_ONLY = Policy("hook", pulls=False, owns=frozenset())


def _change(target: str, stage: Stage, minutes: int = 0) -> StageChange:
    return StageChange(
        lead_key="k" * 32, target=target, stage=stage, at=T0 + timedelta(minutes=minutes)
    )


def test_ladder() -> None:
    assert rank(Stage.DISQUALIFIED) < rank(Stage.SUBSCRIBER) < rank(Stage.MQL) < rank(Stage.SQL)


@pytest.mark.parametrize(
    ("policy", "current", "new", "applied"),
    [
        (SALES, Stage.MQL, Stage.SQL, True),  # sales accepts
        (MARKETING, Stage.MQL, Stage.SQL, True),  # forward from anyone who pulls
        (SALES, Stage.SQL, Stage.LEAD, True),  # sales recycles its own SQL
        (SALES, Stage.MQL, Stage.DISQUALIFIED, True),  # disqualifying is sales' call
        (MARKETING, Stage.SQL, Stage.MQL, False),  # marketing can't undo sales' acceptance
        (MARKETING, Stage.SQL, Stage.DISQUALIFIED, False),
        (SALES, Stage.MQL, Stage.LEAD, False),  # nurture is not sales' stage to set
    ],
)
def test_forward_and_backward(policy: Policy, current: Stage, new: Stage, applied: bool) -> None:
    decision = decide(current, _change(policy.name, new), policy, pushed_stage=None)
    assert decision is not None and decision.apply is applied
    assert decision.reassert is (not applied)
    assert policy.name in decision.reason


def test_echoes_and_no_ops_are_not_decisions() -> None:
    assert decide(Stage.SQL, _change("sales", Stage.MQL), SALES, pushed_stage="mql") is None
    assert decide(Stage.SQL, _change("sales", Stage.SQL), SALES, pushed_stage=None) is None


def test_a_push_only_target_is_corrected_not_followed() -> None:
    decision = decide(Stage.MQL, _change("hook", Stage.SQL), PUSH_ONLY, pushed_stage="mql")
    assert decision is not None and not decision.apply and decision.reassert


def test_in_one_window_the_owner_wins_then_the_later_timestamp() -> None:
    policies = {"sales": SALES, "marketing": MARKETING, "d365": Policy("d365", True, SALES.owns)}
    later_marketing = _change("marketing", Stage.MQL, minutes=5)
    sales = _change("sales", Stage.SQL, minutes=1)
    best, rest = winner([later_marketing, sales], policies, Stage.MQL)
    assert best is sales and rest == [later_marketing]
    d365 = _change("d365", Stage.OPPORTUNITY, minutes=3)
    best, _ = winner([sales, d365], policies, Stage.MQL)
    assert best is d365  # two owners: the later CRM timestamp
