"""Which confirmed leads are hot: a person who asked to be contacted, or a lead that has just
become an MQL. One alert per lead and stage (`hot_lead:<lead>:<stage>`), so a lead pushed
again — another target, a field change, a retry after a crash — is not announced twice,
and a Contact-me lead that later becomes an MQL is announced once more, as an MQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from leadbridge.core.alerts.outbox import Alert
from leadbridge.core.domain.alerting import AlertEvent
from leadbridge.core.domain.models import Action, Lead, Stage

# Stages at which a Contact-me request is still news: sales has not accepted the lead yet.
_NOT_YET_ACCEPTED = frozenset({Stage.SUBSCRIBER, Stage.LEAD, Stage.MQL})


def hot_reason(lead: Lead) -> str | None:
    """Why the lead is hot (`contact_me` or `mql`), or None."""
    if lead.opted_out or lead.stage not in _NOT_YET_ACCEPTED:
        return None
    if Action.CONTACT_ME.value in lead.actions:
        return "contact_me"
    return "mql" if lead.stage == Stage.MQL else None


def hot_lead_alerts(leads: Iterable[Lead], now: datetime, max_age: timedelta) -> list[Alert]:
    """The alerts for the hot ones among `leads`. A lead whose customer last acted longer
    than `max_age` ago is history, not news (old leads re-read, then pushed again)."""
    alerts = []
    for lead in leads:
        reason = hot_reason(lead)
        acted = lead.last_seen or lead.last_received_at
        if reason is None or (acted is not None and acted < now - max_age):
            continue
        stage = str(lead.stage)
        alerts.append(
            Alert(
                AlertEvent.HOT_LEAD,
                f"hot_lead:{lead.lead_key}:{stage}",
                {"lead_key": lead.lead_key, "stage": stage, "reason": reason},
                offer=lead.offer_key,
                country=lead.country,
                score=lead.score,
            )
        )
    return alerts
