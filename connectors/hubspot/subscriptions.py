"""HubSpot opt-outs written: an email opt-out becomes an unsubscribe from the configured
subscription types — or from all email — through the communication-preferences API.

`hs_email_optout*` are read-only through the CRM API (vendor-facts §3.4): the only way to
withdraw an address from HubSpot email is the subscriptions API. The publisher chooses what
(`unsubscribe_from`), leadbridge never guesses:
- subscription type ids → v3, per type:
  - `GET /communication-preferences/v3/status/email/{emailAddress}` → `{"recipient",
    "subscriptionStatuses": [{"id", "name", "status": "SUBSCRIBED|NOT_SUBSCRIBED", …}]}`
    (developers.hubspot.com/docs/api-reference/legacy/communication-preferences/v3/get-
    subscription): which of the configured types the address is still subscribed to.
  - `POST /communication-preferences/v3/unsubscribe` `{"emailAddress", "subscriptionId",
    "legalBasis", "legalBasisExplanation"}` → the status, now `NOT_SUBSCRIBED`
    (…/v3/unsubscribe-contact). "Not valid to use for unsubscribing a contact at a brand or
    portal level": v3 has no "all".
- `"all"` → v4's opt-out of all email: `POST /communication-preferences/v4/statuses/
  {subscriberIdString}/unsubscribe-all?channel=EMAIL` (the path parameter is "the contact's
  email address"; `channel` is required, EMAIL the only value; no body; the answer is
  `{"status": "PENDING|PROCESSING|CANCELED|COMPLETE", "results": [...] (only with
  verbose=true), …}`: developers.hubspot.com/docs/api-reference/communication-preferences-
  subscriptions-v4/subscription-status/post-communication-preferences-v4-statuses-
  subscriberIdString-unsubscribe-all). Scope communication_preferences.write or read_write.
  A contact opted out of all email is what `hs_email_optout` ("Unsubscribed from all email")
  says, so the opt-out read (consent.py) sees it like one made in HubSpot (INFERRED: HubSpot
  doesn't say in so many words that this endpoint sets that property).

Subscription status belongs to the address, not to a contact record ("the status update will
apply to the new contact", vendor-facts §3.4), so one person is one unsubscribe whatever
number of leads they have. Never the other way: leadbridge never subscribes or resubscribes
— an opt-in is the person's to give in HubSpot.

What happened is the person's history: each write done is noted on their leads' results
(`consent["unsubscribe"]`, what was withdrawn, no address); a type HubSpot refuses (a 4xx)
is recorded as `dropped["consent:unsubscribe"]` while the other types go on — core's consent
sync sends such a lead again at its next run (core/sync/consentsync.py); throttled or down
(429, 5xx: the transport's retries spent) leaves the leads queued, retried with back-off.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote

from leadbridge.core.connector import FatalError, Outcome, RetryableError
from leadbridge.core.connector.transport import Transport, response_body
from leadbridge.core.domain.models import Lead, PushResult

STATUS_PATH = "/communication-preferences/v3/status/email/"
UNSUBSCRIBE_PATH = "/communication-preferences/v3/unsubscribe"
UNSUBSCRIBE_ALL_PATH = "/communication-preferences/v4/statuses/{}/unsubscribe-all"
ALL = "all"  # in `unsubscribe_from`: opt the address out of all email (v4)
ALL_EMAIL_PROPERTY = "hs_email_optout"  # "unsubscribed from all email", read-only
# In a lead's payload (what a push is hashed on), never sent: HubSpot property names are
# lower-case letters, digits and underscores.
UNSUBSCRIBE_MARK = "@unsubscribe_from"
# The result keys: a write done (`PushResult.consent`), a write refused (`dropped`; core
# sends a `consent:` refusal again at the next consent sync).
DONE_KEY, REFUSED_KEY = "unsubscribe", "consent:unsubscribe"
# legalBasis values of the v3 API (vendor-facts §3.4).
LegalBasis = Literal[
    "LEGITIMATE_INTEREST_PQL",
    "LEGITIMATE_INTEREST_CLIENT",
    "PERFORMANCE_OF_CONTRACT",
    "CONSENT_WITH_NOTICE",
    "NON_GDPR",
    "PROCESS_AND_STORE",
    "LEGITIMATE_INTEREST_OTHER",
]


def withdrew_email(lead: Lead) -> bool:
    """The person withdrew email (an opt-out naming no channel withdrew them all), the same
    rule as the canonical `opted_out_email` (core/domain/mapping.py)."""
    return "email" in lead.opted_out_of or (lead.opted_out and not lead.opted_out_of)


class HubSpotSubscriptions:
    """The unsubscribe half of HubSpotTarget (which supplies the transport and the config)."""

    name: str
    config: Any
    transport: Transport

    def unsubscribe_opted_out(
        self,
        people: Mapping[str, Sequence[Lead]],
        existing: Mapping[str, dict[str, Any]],
        results: dict[str, PushResult],
    ) -> None:
        """After the upsert: each person whose leads withdrew email, whose contact landed and
        isn't unsubscribed from all email already, is unsubscribed as configured. A failure
        is that person's: retryable (HubSpot down, throttled) leaves their leads queued so the
        unsubscribe is tried again; a refusal is recorded on the results and the others go
        on."""
        if not self.config.unsubscribe_from:
            return
        for email, group in people.items():
            if not any(withdrew_email(lead) for lead in group):
                continue
            if not all(results[lead.lead_key].ok for lead in group):
                continue
            held = (existing.get(email) or {}).get("properties") or {}
            if str(held.get(ALL_EMAIL_PROPERTY)).lower() == "true":
                continue  # unsubscribed from everything already: nothing to add
            try:
                done, refused = self.unsubscribe(email)
            except RetryableError as exc:
                failed = {"ok": False, "error_class": Outcome.RETRYABLE, "error": str(exc)}
                for lead in group:
                    results[lead.lead_key] = results[lead.lead_key].model_copy(update=failed)
                continue
            for lead in group:
                results[lead.lead_key] = _noted(results[lead.lead_key], done, refused)

    def unsubscribe(self, email: str) -> tuple[list[str], dict[str, str]]:
        """Unsubscribe the address as configured: from all email (v4) when `all` is among the
        choices, else from each configured type it is not already out of (v3). What was
        withdrawn now (type ids, or `all`), and each refusal by type."""
        base = self.config.base_url.rstrip("/")
        if ALL in self.config.unsubscribe_from:
            url = f"{base}{UNSUBSCRIBE_ALL_PATH.format(quote(email, safe=''))}?channel=EMAIL"
            try:
                answer = self.transport.request("POST", url)
                self._check(answer, "unsubscribing from all email", email)
            except _Refused as exc:
                return [], {ALL: str(exc)}
            return [ALL], {}
        subscribed = self._still_subscribed(base, email)
        done: list[str] = []
        refused: dict[str, str] = {}
        for subscription in self.config.unsubscribe_from:
            if subscription not in subscribed:
                continue
            body: dict[str, Any] = {"emailAddress": email, "subscriptionId": subscription}
            if self.config.legal_basis:
                body["legalBasis"] = self.config.legal_basis
                body["legalBasisExplanation"] = self.config.legal_basis_explanation
            response = self.transport.request("POST", f"{base}{UNSUBSCRIBE_PATH}", json=body)
            try:
                self._check(response, f"unsubscribing from {subscription}", email)
            except _Refused as exc:  # one type refused: the others still go
                refused[subscription] = str(exc)
                continue
            done.append(subscription)
        return done, refused

    def _still_subscribed(self, base: str, email: str) -> set[str]:
        """The configured types the address isn't NOT_SUBSCRIBED from. A type HubSpot lists no
        status for counts as subscribed: an explicit opt-out is what the person asked for."""
        url = f"{base}{STATUS_PATH}{quote(email, safe='')}"
        response = self.transport.request("GET", url)
        try:
            answer = self._check(response, "reading subscription statuses", email)
        except _Refused:  # can't tell: every type is tried, each answering for itself
            answer = None
        statuses = (answer.get("subscriptionStatuses") or []) if isinstance(answer, dict) else []
        out = {
            str(s.get("id"))
            for s in statuses
            if isinstance(s, dict) and s.get("status") == "NOT_SUBSCRIBED"
        }
        return {str(s) for s in self.config.unsubscribe_from} - out

    def _check(self, response: Any, doing: str, email: str) -> Any:
        """HubSpot's answer, or the error it means; its message goes into the lead's history,
        so the address it may quote is taken out."""
        answer = response_body(response)
        status = response.status_code
        if status < 300:
            return answer
        said = answer.get("message") if isinstance(answer, dict) else None
        why = _without(str(said), email) if said else None
        if status == 403:
            raise FatalError(
                f"{self.name}: HubSpot refused {doing} (403 {why or ''}): the private app "
                "needs the communication_preferences.read_write scope"
            )
        if status == 429 or status >= 500:  # what the transport's retries didn't get past
            raise RetryableError(f"{self.name}: {doing}: HTTP {status}")
        raise _Refused(f"{doing}: HTTP {status}: {why or 'refused'}")


def _noted(result: PushResult, done: Sequence[str], refused: Mapping[str, str]) -> PushResult:
    """The lead's result with what was withdrawn (for its history) and what was refused
    (sent again at the next consent sync). Subscription ids and HubSpot's words only: the
    address is personal data and stays out."""
    update: dict[str, Any] = {}
    if done:
        what = "all email" if ALL in done else f"subscription types {', '.join(done)}"
        update["consent"] = {
            **result.consent,
            DONE_KEY: f"unsubscribed from {what}",
        }
    if refused:
        why = "; ".join(refused.values())
        update["dropped"] = {
            **result.dropped,
            REFUSED_KEY: f"{why} (asked again at the next consent sync)",
        }
    return result.model_copy(update=update) if update else result


def _without(text: str, email: str) -> str:
    """`text` with the address (in any case) replaced: history holds no personal data."""
    return re.sub(re.escape(email), "<the address>", text, flags=re.IGNORECASE)


class _Refused(Exception):
    """HubSpot refused one unsubscribe (a 4xx): recorded, the others go on."""
