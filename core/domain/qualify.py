"""Scoring rules → stage. Marketing qualifies: at `mql_at` points a lead becomes an MQL.

The score is recomputed from the lead's whole state each time (not accumulated per event),
so re-processing the same raw leads gives the same score, and every rule that fired is
recorded with its points so `leads show` can say why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field

from leadbridge.core.domain.models import Lead, Stage
from leadbridge.core.domain.stages import rank


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TitleRule(_Rules):
    pattern: str
    points: int


_DEFAULT_TITLES = [
    TitleRule(
        pattern=r"(?i)\b(c[etiofm]o|chief|vp|vice[- ]president|president|founder|"
        r"owner|head|director|partner|gesch(ä|ae)ftsf(ü|ue)hrer\w*)\b",
        points=15,
    ),
    TitleRule(pattern=r"(?i)\b(manager|lead|architect|principal|部長|課長)", points=10),
]
_PERSONAL_DOMAINS = [
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "yahoo.com",
    "icloud.com",
    "me.com",
    "aol.com",
    "gmx.de",
    "web.de",
    "proton.me",
    "protonmail.com",
    "qq.com",
    "163.com",
    "mail.ru",
    "yandex.ru",
]


class QualificationSettings(_Rules):
    """Scoring: explicit fit (title, company, country) plus implicit interest (actions).

    With the defaults a Contact-me (PLT) lead is an MQL at once — those customers expect a
    call within 24 hours — and an install becomes one when the fit or repeat engagement
    adds up (see docs in config/leadbridge.example.yaml).
    """

    mql_at: int = 50
    actions: dict[str, int] = Field(
        default_factory=lambda: {"PLT": 50, "Create": 30, "INS": 25, "StartTestDrive": 20, "DNC": 0}
    )
    other_action: int = 10
    repeat_engagement: int = 10
    repeat_engagement_max: int = 3
    company_present: int = 5
    titles: list[TitleRule] = Field(default_factory=lambda: list(_DEFAULT_TITLES))
    countries: dict[str, int] = Field(default_factory=dict)
    personal_email: int = -10
    personal_email_domains: list[str] = Field(default_factory=lambda: list(_PERSONAL_DOMAINS))


@dataclass(frozen=True)
class Score:
    points: int
    rules: list[str]


def score(lead: Lead, rules: QualificationSettings) -> Score:
    fired: list[tuple[str, int]] = []
    if lead.actions:
        best = max(lead.actions, key=lambda a: _action_points(a, rules))
        fired.append((f"action {best}", _action_points(best, rules)))
        engaged = [a for a in lead.actions if a != "DNC"]
        repeats = min(max(len(engaged) - 1, 0), rules.repeat_engagement_max)
        if repeats and rules.repeat_engagement:
            fired.append((f"repeat engagement x{repeats}", repeats * rules.repeat_engagement))
    if lead.company and rules.company_present:
        fired.append(("company given", rules.company_present))
    if lead.title:
        for rule in rules.titles:
            if _compiled(rule.pattern).search(lead.title):
                fired.append((f"title matches {rule.pattern!r}", rule.points))
                break
    if lead.country and lead.country in rules.countries:
        fired.append((f"country {lead.country}", rules.countries[lead.country]))
    domain = (lead.email or "").rpartition("@")[2]
    if domain and domain in rules.personal_email_domains and rules.personal_email:
        fired.append(("personal email domain", rules.personal_email))
    return Score(sum(p for _, p in fired), [f"{name} ({p:+d})" for name, p in fired])


def stage_after_scoring(lead: Lead, result: Score, rules: QualificationSettings) -> Stage | None:
    """The stage scoring moves the lead to, or None. Scoring only moves forward, never to
    MQL for a do-not-contact lead, and never touches a stage sales has set."""
    if lead.do_not_contact or result.points < rules.mql_at:
        return None
    if rank(lead.stage) < rank(Stage.MQL) and lead.stage != Stage.DISQUALIFIED:
        return Stage.MQL
    return None


def _action_points(action: str, rules: QualificationSettings) -> int:
    return rules.actions.get(action, rules.other_action)


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
