"""Stage order and the rules of moving between stages (docs/architecture.md, "Stages").

Forward moves are accepted from any target that pulls stages. Backward moves (recycle to
nurture, disqualify) are accepted only from a target that owns the stage the lead is in, or
the stage it moves to: sales owns SQL and beyond, and disqualifying is sales' call, so
Salesforce may disqualify an MQL or send an SQL back to nurture, while a HubSpot user
dragging an SQL back to MQL is ignored — and the true stage re-asserted there. Two changes
to one lead in one window: the owner's wins; between equals, the later CRM timestamp.
Every decision says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from leadbridge.core.domain.models import Stage, StageChange

ORDER = [Stage.SUBSCRIBER, Stage.LEAD, Stage.MQL, Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER]
SALES_STAGES = (Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER, Stage.DISQUALIFIED)


def rank(stage: Stage | str) -> int:
    """Position on the ladder; `disqualified` sits outside it, below everything."""
    stage = Stage(stage)
    return -1 if stage is Stage.DISQUALIFIED else ORDER.index(stage)


def is_forward(current: Stage | str, new: Stage | str) -> bool:
    return rank(new) > rank(current)


@dataclass(frozen=True)
class Policy:
    """One target's part in stage sync."""

    name: str
    pulls: bool  # stage_sync two_way or pull
    owns: frozenset[Stage]


@dataclass(frozen=True)
class Decision:
    apply: bool
    reason: str
    reassert: bool = False  # push the true stage back to the target that disagreed


def decide(
    current: Stage, change: StageChange, policy: Policy, pushed_stage: str | None
) -> Decision | None:
    """What to do with one stage read back from a CRM; None when it is no change at all."""
    new = Stage(change.stage)
    if pushed_stage is not None and new == Stage(pushed_stage):
        return None  # echo: the CRM holds what leadbridge itself last wrote there
    if new == current:
        return None
    if not policy.pulls:
        return Decision(False, f"{policy.name} does not pull stages (stage_sync)", reassert=True)
    if is_forward(current, new):
        return Decision(True, f"forward move by {policy.name}")
    if current in policy.owns or new in policy.owns:
        owned = current if current in policy.owns else new
        return Decision(True, f"backward move by {policy.name}, which owns {owned.value}")
    return Decision(
        False,
        f"backward move by {policy.name}, which owns neither {current.value} nor {new.value}",
        reassert=True,
    )


# Marketing — leadbridge's scoring — owns the stages before sales accepts a lead.
MARKETING = Policy(
    "leadbridge", pulls=True, owns=frozenset({Stage.SUBSCRIBER, Stage.LEAD, Stage.MQL})
)


def recycle(current: Stage, why: str) -> Decision:
    """Marketing's own backward move, MQL → nurture (`recycle_after`, docs/scoring.md): the
    same rule as a CRM's backward move — accepted only from the owner of the current
    stage, and marketing owns MQL, never what sales has set."""
    if current != Stage.MQL:
        return Decision(False, f"{current.value} is not an MQL: only an MQL is recycled")
    return Decision(True, f"backward move by marketing ({MARKETING.name}), which owns mql: {why}")


def winner(
    changes: Sequence[StageChange], policies: dict[str, Policy], current: Stage
) -> tuple[StageChange, list[StageChange]]:
    """Of several targets' changes to one lead in one window: the owner's, then the latest."""

    def owner(change: StageChange) -> bool:
        owns = policies[change.target].owns
        return current in owns or Stage(change.stage) in owns

    ranked = sorted(changes, key=lambda c: (owner(c), c.at))
    return ranked[-1], ranked[:-1]
