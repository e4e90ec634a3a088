"""Routing: which owner, queue or team a new lead goes to in each CRM.

Rules are tried in order; the first whose every condition holds wins; otherwise the
target's default (or none: the CRM's own assignment decides). Owners are set when a record
is created, never on updates, so a salesperson's reassignment is never overwritten.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from leadbridge.core.domain.models import Lead
from leadbridge.core.domain.stages import rank


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str | int) else value


Values = Annotated[list[str] | None, BeforeValidator(_as_list)]


class Match(BaseModel):
    """Conditions on the lead; values within one condition are alternatives."""

    model_config = ConfigDict(extra="forbid")

    offer: Values = None
    action: Values = None  # any action the lead has taken
    country: Values = None
    stage: Values = None  # this stage or beyond
    score_at_least: int | None = None


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    when: Match = Field(default_factory=Match)
    owner: str


def matches(lead: Lead, when: Match) -> bool:
    if when.offer and lead.offer_key not in when.offer and lead.offer_id not in when.offer:
        return False
    if when.action and not set(when.action) & set(lead.actions):
        return False
    if when.country and (lead.country or "").upper() not in {c.upper() for c in when.country}:
        return False
    if when.stage and rank(lead.stage) < min(rank(s) for s in when.stage):
        return False
    return when.score_at_least is None or lead.score >= when.score_at_least


def route(lead: Lead, rules: list[Rule], default: str | None) -> str | None:
    return next((rule.owner for rule in rules if matches(lead, rule.when)), default)
