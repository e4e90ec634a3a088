"""Scoring rules → stage. Marketing qualifies a lead; sales accepts it.

Two models, chosen by the config:

- **One number** (the default, and what a config without `fit:`/`engagement:` gets): every
  rule adds into one score and at `mql_at` points a lead becomes an MQL. The score never
  changes after the lead's last action.
- **Fit × engagement** (docs/scoring.md), as lead-management practice scores a lead: an
  explicit *fit* grade A–D (who they are: title, company, country, mail domain, any mapped
  attribute) and an implicit *engagement* level 1–4 (what they did, how often, how
  recently), with engagement points losing value with a half-life. The score is the pair
  ("A2") plus the numbers behind it, and the grid (`mql_when`) decides MQL.

Either way the score is recomputed from the lead's whole state each time (not accumulated
per event), and engagement decays from the actions' own times and an explicit `now` — this
module never reads the clock — so re-processing the same history gives the same score.
Every rule that fired is recorded with its points (`name (+N)`) so `leads show` can say why.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from leadbridge.core.domain.durations import Duration, format_duration
from leadbridge.core.domain.models import Lead, Stage
from leadbridge.core.domain.stages import rank

GRADES = ("A", "B", "C", "D")
LEVELS = (1, 2, 3, 4)
# A cell of the grid: fit grade then engagement level, "A1" … "D4".
Cell = Annotated[str, StringConstraints(pattern=r"^[A-D][1-4]$")]
# The newest actions a lead keeps the time of: older ones have long decayed to nothing.
MAX_TOUCHES = 50


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TitleRule(_Rules):
    pattern: str
    points: int


class AttributeRule(_Rules):
    """Points for a value any source provides: a lead field (`company`, `country`, or one a
    source maps, such as a company size or industry) or `attribution.<key>`. With
    `pattern` (a regular expression) or `equals` (alternatives, case-insensitive) the value
    must match; with neither, having a value at all earns the points."""

    field: str
    points: int
    pattern: str | None = None
    equals: list[str] | None = None

    @model_validator(mode="after")
    def _known_field(self) -> AttributeRule:
        if not self.field.startswith("attribution.") and self.field not in _text_fields():
            raise ValueError(
                f"{self.field!r} is not a lead field; use one of "
                f"{', '.join(sorted(_text_fields()))} or attribution.<key>"
            )
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"{self.pattern!r} is not a regular expression: {exc}") from None
        return self


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


def _default_actions() -> dict[str, int]:
    return {"PLT": 50, "Create": 30, "INS": 25, "StartTestDrive": 20, "DNC": 0}


class FitGrades(_Rules):
    """The least fit points of each grade; fewer than `C` is D."""

    A: int = 20
    B: int = 10
    C: int = 0

    @model_validator(mode="after")
    def _descending(self) -> FitGrades:
        if not self.A >= self.B >= self.C:
            raise ValueError("grades must not rise from A to C (A ≥ B ≥ C)")
        return self


class EngagementLevels(_Rules):
    """The least (decayed) engagement points of each level; fewer than level 3's is 4."""

    level_1: int = Field(default=40, alias="1")
    level_2: int = Field(default=20, alias="2")
    level_3: int = Field(default=10, alias="3")
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _levels_as_written(cls, data: Any) -> Any:
        """`{1: 40}` in YAML has a number for a key: the level's name all the same."""
        if isinstance(data, dict):
            return {str(key): value for key, value in data.items()}
        return data

    @model_validator(mode="after")
    def _descending(self) -> EngagementLevels:
        if not self.level_1 >= self.level_2 >= self.level_3:
            raise ValueError("levels must not rise from 1 to 3 (1 ≥ 2 ≥ 3)")
        return self


class FitRules(_Rules):
    """Explicit fit: who the person is. Points add up; `grades` turns them into A–D."""

    titles: list[TitleRule] = Field(default_factory=lambda: list(_DEFAULT_TITLES))
    company_present: int = 5
    countries: dict[str, int] = Field(default_factory=dict)
    personal_email: int = -10
    personal_email_domains: list[str] = Field(default_factory=lambda: list(_PERSONAL_DOMAINS))
    attributes: list[AttributeRule] = Field(default_factory=list)
    grades: FitGrades = Field(default_factory=FitGrades)


class EngagementRules(_Rules):
    """Implicit engagement: what the person did, how often, how recently.

    The strongest action counts its points, each further action `repeat` points (at most
    `repeat_max` of them), each decayed by its age with `half_life`; an action within
    `recent_within` adds `recent`. `levels` turns the points into 1–4.
    """

    actions: dict[str, int] = Field(default_factory=_default_actions)
    other_action: int = 10
    repeat: int = 10
    repeat_max: int = Field(default=3, ge=0)
    half_life: Duration = Field(default=timedelta(days=30), gt=timedelta(0))
    recent: int = 10
    recent_within: Duration = Field(default=timedelta(days=7))
    levels: EngagementLevels = Field(default_factory=EngagementLevels)


class QualificationSettings(_Rules):
    """Scoring: explicit fit (title, company, country) plus implicit interest (actions).

    With the defaults a Contact-me (PLT) lead is an MQL at once — those customers expect a
    call within 24 hours — and an install becomes one when the fit or repeat engagement
    adds up (see docs in config/leadbridge.example.yaml).

    Giving `fit`, `engagement`, `mql_when` or `recycle_after` switches to the fit ×
    engagement model (docs/scoring.md); the one-number keys above them are then unused,
    except `mql_at`, which stays the threshold on fit + engagement points when no grid is
    given.
    """

    mql_at: int = 50
    actions: dict[str, int] = Field(default_factory=_default_actions)
    other_action: int = 10
    repeat_engagement: int = 10
    repeat_engagement_max: int = 3
    company_present: int = 5
    titles: list[TitleRule] = Field(default_factory=lambda: list(_DEFAULT_TITLES))
    countries: dict[str, int] = Field(default_factory=dict)
    personal_email: int = -10
    personal_email_domains: list[str] = Field(default_factory=lambda: list(_PERSONAL_DOMAINS))
    # --- fit × engagement (issue 24, docs/scoring.md) ---
    fit: FitRules | None = None
    engagement: EngagementRules | None = None
    mql_when: list[Cell] | None = None  # e.g. [A1, A2, B1]
    mql_on: list[str] = Field(default_factory=lambda: ["PLT"])  # an MQL at once, any grade
    recycle_after: Duration | None = None  # an unaccepted MQL at level 4 goes back to nurture

    @property
    def graded(self) -> bool:
        """Whether the config asks for fit × engagement (else: one number, as before)."""
        return any(
            value is not None
            for value in (self.fit, self.engagement, self.mql_when, self.recycle_after)
        )

    @property
    def fit_rules(self) -> FitRules:
        return self.fit or FitRules()

    @property
    def engagement_rules(self) -> EngagementRules:
        return self.engagement or EngagementRules()


@dataclass(frozen=True)
class Score:
    """A score and the rules that made it. Graded, it also carries the grid cell (`grade`,
    e.g. "A2") and the two numbers behind it; `points` is then fit + engagement."""

    points: int
    rules: list[str]
    grade: str | None = None
    fit: int | None = None
    engagement: int | None = None

    @property
    def level(self) -> int | None:
        return int(self.grade[1]) if self.grade else None


def record_touch(lead: Lead, action: str | None, at: datetime) -> None:
    """Keep the time of one customer action on the lead, in place: engagement decays from
    these. Kept in time order, the newest `MAX_TOUCHES` only, so the same actions give the
    same list whatever order they were processed in."""
    touch = (action or "unknown", at)
    if touch in lead.touches:
        return  # the same action re-processed
    lead.touches = sorted([*lead.touches, touch], key=lambda t: (t[1], t[0]))[-MAX_TOUCHES:]


def score(lead: Lead, rules: QualificationSettings, now: datetime | None = None) -> Score:
    """The lead's score as of `now` (graded; default: its last action, so a call without a
    clock is still deterministic). One number unless the config asks for fit × engagement."""
    if rules.graded:
        return graded_score(lead, rules, now or lead.last_seen)
    return _one_number(lead, rules)


def _one_number(lead: Lead, rules: QualificationSettings) -> Score:
    fired: list[tuple[str, int]] = []
    if lead.actions:
        best = max(lead.actions, key=lambda a: _action_points(a, rules))
        fired.append((f"action {best}", _action_points(best, rules)))
        engaged = [a for a in lead.actions if a != "DNC"]
        repeats = min(max(len(engaged) - 1, 0), rules.repeat_engagement_max)
        if repeats and rules.repeat_engagement:
            fired.append((f"repeat engagement x{repeats}", repeats * rules.repeat_engagement))
    fired += _who(lead, rules)
    return Score(sum(p for _, p in fired), _shown(fired))


def _who(lead: Lead, rules: FitRules | QualificationSettings) -> list[tuple[str, int]]:
    """The rules on who the person is, shared by both models (the one-number keys and
    `fit` have the same names): company, title (the first that matches), country, mail."""
    fired: list[tuple[str, int]] = []
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
    return fired


# --- fit × engagement ---------------------------------------------------------------------


def graded_score(lead: Lead, rules: QualificationSettings, now: datetime | None) -> Score:
    """The grid cell, the numbers behind it and every rule that fired, as of `now`."""
    fit_points, fit_fired = fit(lead, rules.fit_rules)
    points, engaged_fired = engagement(_touches(lead), rules.engagement_rules, now)
    engagement_points = _whole(points)
    cell = grade_of(fit_points, rules.fit_rules.grades) + str(
        level_of(engagement_points, rules.engagement_rules.levels)
    )
    return Score(
        points=fit_points + engagement_points,
        rules=[
            f"grade {cell}",
            *_shown(fit_fired, "fit: "),
            *_shown(engaged_fired, "engagement: "),
        ],
        grade=cell,
        fit=fit_points,
        engagement=engagement_points,
    )


def fit(lead: Lead, rules: FitRules) -> tuple[int, list[tuple[str, int]]]:
    """Fit points and the rules that gave them."""
    fired = _who(lead, rules)
    for attribute in rules.attributes:
        if _attribute_matches(lead, attribute):
            fired.append((f"{attribute.field} {_condition(attribute)}", attribute.points))
    return sum(p for _, p in fired), fired


def engagement(
    touches: Sequence[tuple[str, datetime]], rules: EngagementRules, now: datetime | None
) -> tuple[float, list[tuple[str, int]]]:
    """Engagement points as of `now`, and the rules that gave them (points as they count now).

    The total is the best of: any one action's decayed points plus `repeat` decayed points
    for each of up to `repeat_max` others (the most recent). Being the best of sums of
    decaying terms, it can only fall while nothing happens (monotone between events).
    """
    engaged = [(action, at) for action, at in touches if _points(action, rules) > 0]
    if not engaged:
        return 0.0, []
    now = now or max(at for _, at in engaged)
    decay = [_decay(at, now, rules.half_life) for _, at in engaged]
    best_total = -1.0
    best_fired: list[tuple[str, int]] = []
    for i, (action, at) in enumerate(engaged):
        own = _points(action, rules) * decay[i]
        others = sorted((d for j, d in enumerate(decay) if j != i), reverse=True)
        repeats = others[: rules.repeat_max] if rules.repeat else []
        total = own + rules.repeat * sum(repeats)
        if total > best_total:
            best_total = total
            best_fired = [(f"action {action}, {_age(at, now)}", _whole(own))]
            if repeats:
                best_fired.append(
                    (f"repeat engagement x{len(repeats)}", _whole(rules.repeat * sum(repeats)))
                )
    newest = max(at for _, at in engaged)
    if rules.recent and now - newest <= rules.recent_within:
        best_total += rules.recent
        best_fired.append((f"action within {format_duration(rules.recent_within)}", rules.recent))
    return best_total, best_fired


def grade_of(points: int, grades: FitGrades) -> str:
    for letter, least in (("A", grades.A), ("B", grades.B), ("C", grades.C)):
        if points >= least:
            return letter
    return "D"


def level_of(points: float, levels: EngagementLevels) -> int:
    for level, least in ((1, levels.level_1), (2, levels.level_2), (3, levels.level_3)):
        if points >= least:
            return level
    return 4


def _touches(lead: Lead) -> list[tuple[str, datetime]]:
    """The lead's timed actions; a lead stored before times were kept has its actions at
    its last action's time (the latest they can have been: never decays too fast)."""
    if lead.touches or lead.last_seen is None:
        return list(lead.touches)
    return [(action, lead.last_seen) for action in lead.actions]


def _whole(points: float) -> int:
    """Points as shown and compared with the bands: rounded half up (an action a second
    old is still worth its points)."""
    return math.floor(points + 0.5)


def _decay(at: datetime, now: datetime, half_life: timedelta) -> float:
    age = max((now - at).total_seconds(), 0.0)  # an action "in the future" (clock skew) is new
    return float(0.5 ** (age / half_life.total_seconds()))


def _age(at: datetime, now: datetime) -> str:
    return f"{max((now - at).days, 0)}d ago"


def _points(action: str, rules: EngagementRules) -> int:
    return rules.actions.get(action, rules.other_action)


# --- stages -------------------------------------------------------------------------------


def stage_after_scoring(lead: Lead, result: Score, rules: QualificationSettings) -> Stage | None:
    """The stage scoring moves the lead to, or None. Scoring only moves forward, never to
    MQL for a do-not-contact lead, and never touches a stage sales has set."""
    if lead.do_not_contact or not _qualifies(lead, result, rules):
        return None
    if rank(lead.stage) < rank(Stage.MQL) and lead.stage != Stage.DISQUALIFIED:
        return Stage.MQL
    return None


def mql_reason(lead: Lead, result: Score, rules: QualificationSettings) -> str:
    """Why the lead is an MQL, for its history."""
    if not rules.graded:
        return f"score {result.points} ≥ mql_at {rules.mql_at}"
    instant = [a for a in lead.actions if a in rules.mql_on]
    if instant:
        return f"action {instant[0]} is an MQL at once (mql_on)"
    if rules.mql_when is not None:
        return f"grade {result.grade} is in mql_when {', '.join(rules.mql_when)}"
    return f"fit + engagement {result.points} ≥ mql_at {rules.mql_at}"


def _qualifies(lead: Lead, result: Score, rules: QualificationSettings) -> bool:
    if not rules.graded:
        return result.points >= rules.mql_at
    if any(action in rules.mql_on for action in lead.actions):
        return True  # Contact me: the customer asked for a call
    if rules.mql_when is not None:
        return result.grade in rules.mql_when
    return result.points >= rules.mql_at


def recycle_reason(
    lead: Lead,
    result: Score,
    rules: QualificationSettings,
    mql_since: datetime | None,
    now: datetime,
) -> str | None:
    """Why an MQL goes back to nurture now, or None when it stays.

    Marketing owns MQL, so sending one back is marketing's own backward move: an MQL that
    sales never accepted (still MQL), at engagement level 4, `recycle_after` after it
    became one (`mql_since`; unknown: its last action).
    """
    if rules.recycle_after is None or lead.stage != Stage.MQL or result.level != 4:
        return None
    since = mql_since or lead.last_seen
    if since is None or now - since < rules.recycle_after:
        return None
    days = rules.recycle_after.days
    return (
        f"recycled: an MQL for {max((now - since).days, 0)} days (recycle_after {days}d) "
        f"that sales never accepted, its engagement now level 4 (grade {result.grade})"
    )


# --- helpers ------------------------------------------------------------------------------


def _shown(fired: Sequence[tuple[str, int]], prefix: str = "") -> list[str]:
    return [f"{prefix}{name} ({p:+d})" for name, p in fired]


def _action_points(action: str, rules: QualificationSettings) -> int:
    return rules.actions.get(action, rules.other_action)


def _attribute_matches(lead: Lead, rule: AttributeRule) -> bool:
    if rule.field.startswith("attribution."):
        value = lead.attribution.get(rule.field.removeprefix("attribution."))
    else:
        value = getattr(lead, rule.field, None)
    if value is None or value == "":
        return False
    text = str(value)
    if rule.equals is not None:
        return text.casefold() in {v.casefold() for v in rule.equals}
    if rule.pattern is not None:
        return _compiled(rule.pattern).search(text) is not None
    return True


def _condition(rule: AttributeRule) -> str:
    if rule.equals is not None:
        return f"is {' or '.join(rule.equals)}"
    if rule.pattern is not None:
        return f"matches {rule.pattern!r}"
    return "given"


@lru_cache(maxsize=1)
def _text_fields() -> frozenset[str]:
    """The lead fields an attribute rule may name: its plain values (whatever a source
    fills), not its bookkeeping."""
    bookkeeping = {"lead_key", "touches", "score_rules", "flags", "attribution", "actions"}
    return frozenset(f.name for f in fields(Lead) if f.name not in bookkeeping)


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
