from __future__ import annotations

from leadbridge.core.domain.models import Lead, Stage
from leadbridge.core.domain.qualify import score, stage_after_scoring
from leadbridge.core.settings import QualificationSettings

RULES = QualificationSettings()


def _lead(**fields: object) -> Lead:
    return Lead(**({"lead_key": "k", "offer_key": "o", "email": "a@contoso.com"} | fields))


def test_contact_me_is_an_mql_at_once() -> None:
    lead = _lead(actions=["PLT"])
    result = score(lead, RULES)
    assert result.points >= RULES.mql_at
    assert stage_after_scoring(lead, result, RULES) is Stage.MQL
    assert result.rules[0].startswith("action PLT")


def test_an_install_alone_is_nurture_until_fit_or_repeat_engagement_adds_up() -> None:
    lead = _lead(actions=["INS"], company="Contoso")
    assert stage_after_scoring(lead, score(lead, RULES), RULES) is None
    lead = _lead(actions=["INS", "Create"], company="Contoso", title="CTO")
    result = score(lead, RULES)
    assert result.points == 30 + 10 + 5 + 15
    assert stage_after_scoring(lead, result, RULES) is Stage.MQL


def test_do_not_contact_is_never_an_mql_by_scoring() -> None:
    lead = _lead(actions=["DNC"], do_not_contact=True, company="X", title="CEO", score=0)
    rules = QualificationSettings(mql_at=1)
    assert stage_after_scoring(lead, score(lead, rules), rules) is None


def test_scoring_never_moves_a_stage_sales_set() -> None:
    for stage in (Stage.SQL, Stage.CUSTOMER, Stage.DISQUALIFIED, Stage.MQL):
        lead = _lead(actions=["PLT"], stage=stage)
        assert stage_after_scoring(lead, score(lead, RULES), RULES) is None


def test_rules_are_configurable_and_explained() -> None:
    rules = QualificationSettings(
        mql_at=30, actions={"INS": 5}, countries={"DE": 30}, company_present=0
    )
    lead = _lead(actions=["INS"], country="DE", email="x@gmail.com")
    result = score(lead, rules)
    assert result.points == 5 + 30 - 10
    assert any("country DE" in r for r in result.rules)
    assert any("personal email" in r for r in result.rules)


def test_unknown_actions_score_the_other_action_points() -> None:
    assert score(_lead(actions=["FreeTrial"]), RULES).points == RULES.other_action
