"""HubSpot opt-outs written: an email opt-out becomes an unsubscribe from the configured
subscription types, through the communication-preferences API.

`hs_email_optout*` are read-only through the CRM API (vendor-facts §3.4): the only way to
withdraw an address from HubSpot email is the subscriptions API. v3, per subscription type:
- `GET /communication-preferences/v3/status/email/{emailAddress}` → `{"recipient",
  "subscriptionStatuses": [{"id", "name", "status": "SUBSCRIBED|NOT_SUBSCRIBED", …}]}`
  (developers.hubspot.com/docs/api-reference/legacy/communication-preferences/v3/get-
  subscription): which of the configured types the address is still subscribed to.
- `POST /communication-preferences/v3/unsubscribe` `{"emailAddress", "subscriptionId",
  "legalBasis", "legalBasisExplanation"}` → the status, now `NOT_SUBSCRIBED`
  (…/v3/unsubscribe-contact). "Not valid to use for unsubscribing a contact at a brand or
  portal level": the publisher names the types (`unsubscribe_from`), leadbridge never guesses.

Subscription status belongs to the address, not to a contact record ("the status update will
apply to the new contact", vendor-facts §3.4), so one person is one unsubscribe whatever
number of leads they have. Never the other way: v3 cannot resubscribe an opted-out address,
and leadbridge never calls subscribe at all — an opt-in is the person's to give in HubSpot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote

from leadbridge.core.connector import FatalError, Outcome, RetryableError
from leadbridge.core.connector.transport import Transport, response_body
from leadbridge.core.domain.models import Lead, PushResult

STATUS_PATH = "/communication-preferences/v3/status/email/"
UNSUBSCRIBE_PATH = "/communication-preferences/v3/unsubscribe"
ALL_EMAIL_PROPERTY = "hs_email_optout"  # "unsubscribed from all email", read-only
# In a lead's payload (what a push is hashed on), never sent: HubSpot property names are
# lower-case letters, digits and underscores.
UNSUBSCRIBE_MARK = "@unsubscribe_from"
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
        isn't unsubscribed from all email already, is unsubscribed from each configured type
        still subscribed. A failure is that person's: retryable (HubSpot down, throttled)
        leaves their leads queued so the unsubscribe is tried again; a refusal is recorded on
        the result (`dropped["unsubscribe"]`) and the others go on."""
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
                self.unsubscribe(email)
            except RetryableError as exc:
                failed = {"ok": False, "error_class": Outcome.RETRYABLE, "error": str(exc)}
                for lead in group:
                    results[lead.lead_key] = results[lead.lead_key].model_copy(update=failed)
            except _Refused as exc:
                for lead in group:
                    result = results[lead.lead_key]
                    dropped = {**result.dropped, "unsubscribe": str(exc)}
                    results[lead.lead_key] = result.model_copy(update={"dropped": dropped})

    def unsubscribe(self, email: str) -> list[str]:
        """Unsubscribe the address from each configured type it is not already out of; the
        ids unsubscribed now."""
        base = self.config.base_url.rstrip("/")
        subscribed = self._still_subscribed(base, email)
        done = []
        for subscription in self.config.unsubscribe_from:
            if subscription not in subscribed:
                continue
            body: dict[str, Any] = {"emailAddress": email, "subscriptionId": subscription}
            if self.config.legal_basis:
                body["legalBasis"] = self.config.legal_basis
                body["legalBasisExplanation"] = self.config.legal_basis_explanation
            response = self.transport.request("POST", f"{base}{UNSUBSCRIBE_PATH}", json=body)
            self._check(response, f"unsubscribing from {subscription}")
            done.append(subscription)
        return done

    def _still_subscribed(self, base: str, email: str) -> set[str]:
        """The configured types the address isn't NOT_SUBSCRIBED from. A type HubSpot lists no
        status for counts as subscribed: an explicit opt-out is what the person asked for."""
        url = f"{base}{STATUS_PATH}{quote(email, safe='')}"
        response = self.transport.request("GET", url)
        answer = self._check(response, "reading subscription statuses")
        statuses = (answer.get("subscriptionStatuses") or []) if isinstance(answer, dict) else []
        out = {
            str(s.get("id"))
            for s in statuses
            if isinstance(s, dict) and s.get("status") == "NOT_SUBSCRIBED"
        }
        return {str(s) for s in self.config.unsubscribe_from} - out

    def _check(self, response: Any, doing: str) -> Any:
        answer = response_body(response)
        status = response.status_code
        if status < 300:
            return answer
        why = answer.get("message") if isinstance(answer, dict) else None
        if status == 403:
            raise FatalError(
                f"{self.name}: HubSpot refused {doing} (403 {why or ''}): the private app "
                "needs the communication_preferences.read_write scope"
            )
        if status >= 500:
            raise RetryableError(f"{self.name}: {doing}: HTTP {status}")
        raise _Refused(f"{doing}: HTTP {status}: {why or 'refused'}")


class _Refused(Exception):
    """HubSpot refused one person's unsubscribe (a 4xx): recorded, the batch goes on."""
