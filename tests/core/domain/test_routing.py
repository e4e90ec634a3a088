from __future__ import annotations

from leadbridge.core.domain.models import Lead, Stage
from leadbridge.core.domain.routing import Rule, route

RULES = [
    Rule.model_validate(r)
    for r in [
        {"when": {"offer": ["contoso.crm", "contoso.erp"], "stage": "sql"}, "owner": "enterprise"},
        {"when": {"country": ["de", "AT", "CH"]}, "owner": "dach"},
        {"when": {"action": "PLT", "score_at_least": 60}, "owner": "hot"},
    ]
]


def _lead(**fields: object) -> Lead:
    return Lead(**({"lead_key": "k", "offer_key": "contoso.saas", "actions": ["INS"]} | fields))


def test_first_matching_rule_wins_and_every_condition_must_hold() -> None:
    assert (
        route(_lead(offer_key="contoso.crm", stage=Stage.OPPORTUNITY, country="DE"), RULES, None)
        == "enterprise"
    )  # beyond SQL counts; DACH would match too
    assert (
        route(_lead(offer_key="contoso.crm", stage=Stage.MQL, country="DE"), RULES, None) == "dach"
    )
    assert route(_lead(actions=["INS", "PLT"], score=60), RULES, None) == "hot"
    assert route(_lead(actions=["PLT"], score=59), RULES, "pool") == "pool"
    assert route(_lead(), [], None) is None
