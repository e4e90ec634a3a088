"""Stage order and the rules of moving between stages (DESIGN.md, "Stages")."""

from __future__ import annotations

from leadbridge.core.models import Stage

ORDER = [Stage.SUBSCRIBER, Stage.LEAD, Stage.MQL, Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER]


def rank(stage: Stage | str) -> int:
    """Position on the ladder; `disqualified` sits outside it, below everything."""
    stage = Stage(stage)
    return -1 if stage is Stage.DISQUALIFIED else ORDER.index(stage)


def is_forward(current: Stage | str, new: Stage | str) -> bool:
    return rank(new) > rank(current)
