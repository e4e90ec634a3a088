"""Customer Insights – Journeys consent: an email opt-out written as an opted-out contact
point consent record, where CI-J is installed.

Real-time journeys read consent per contact point from `msdynmkt_contactpointconsent4`, not
from a lead's `donotemail` (vendor-facts §1.7), and the default Commercial purpose is
Nonrestrictive: an address with no record gets sent to. So an opt-out leadbridge carries
becomes an explicit record, created in the same write `$batch` as the leads:
`POST msdynmkt_contactpointconsent4s` with the values Microsoft's consent-flow guide gives
(Microsoft's guide to keeping contact point consent in step with a cloud flow, "Create the
contact point consent record" — MicrosoftDocs/customer-insights, journeys docs):
- `msdynmkt_contactpointvalue`: the email;
- `msdynmkt_contactpointtype` 534120000: Email;
- `msdynmkt_contactpointconsenttype` 534120000: Purpose (mandatory since June 2023);
- `msdynmkt_value` 534120002: opted out (534120001 is opted in — never sent);
- `msdynmkt_purposeId@odata.bind`: `/msdynmkt_purposes(<GUID>)`, the publisher's purpose
  (compliance profile > Consent Purposes), `journeys_purpose_id`.

Detected once per target: `GET EntityDefinitions(LogicalName='msdynmkt_contactpointconsent4')`
is 200 where CI-J is installed and 404 where it isn't (query-metadata-web-api.md). Before
writing, the opted-out records already there for the batch's addresses are read (the `In`
query function), so a re-delivery doesn't stack duplicates and nothing is ever updated:
a record someone else wrote, opted in or out, is theirs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

from leadbridge.connectors.dataverse import batch
from leadbridge.core.connector import Outcome, RetryableError
from leadbridge.core.connector.transport import Transport, response_body
from leadbridge.core.domain.models import Lead, PushResult

CONSENT_ENTITY = "msdynmkt_contactpointconsent4"
CONSENT_SET = "msdynmkt_contactpointconsent4s"
CONTACT_POINT = "msdynmkt_contactpointvalue"
EMAIL_CHANNEL = 534120000  # msdynmkt_contactpointtype: Email
PURPOSE_CONSENT = 534120000  # msdynmkt_contactpointconsenttype: Purpose
OPTED_OUT = 534120002  # msdynmkt_value: opted out
RETRYABLE = frozenset({0, 429, 500, 502, 503, 504})  # 0: no answer for it at all
ODATA = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}


def withdrew_email(lead: Lead) -> bool:
    """As the canonical `opted_out_email`: an opt-out naming no channel withdrew them all."""
    return "email" in lead.opted_out_of or (lead.opted_out and not lead.opted_out_of)


class JourneysConsent:
    """The CI-J half of DataverseTarget (which supplies transport, config and `base`)."""

    name: str
    config: Any
    transport: Transport
    base: str
    _journeys: bool | None = None  # detected: per target instance, asked once

    def journeys_installed(self) -> bool:
        """Whether the environment has CI-J's consent table; asked once, then remembered."""
        if self._journeys is None:
            key = quote(batch.odata_string(CONSENT_ENTITY), safe="'")
            url = f"{self.base}/EntityDefinitions(LogicalName={key})?$select=LogicalName"
            response = self.transport.request("GET", url, headers=ODATA)
            if response.status_code == 404:
                self._journeys = False
            elif response.status_code < 300:
                self._journeys = True
            else:
                raise RetryableError(
                    f"{self.name}: looking for Customer Insights – Journeys HTTP "
                    f"{response.status_code}"
                )
        return self._journeys

    def consent_parts(self, leads: Sequence[Lead]) -> dict[str, batch.Part]:
        """email → the POST creating its opted-out record, for the addresses of this batch
        that withdrew email and have no opted-out record yet. Empty when not configured or
        CI-J isn't there."""
        if not self.config.journeys_purpose_id:
            return {}
        emails = sorted({lead.email for lead in leads if lead.email and withdrew_email(lead)})
        if not emails or not self.journeys_installed():
            return {}
        held = self._opted_out_already(emails)
        purpose = quote(self.config.journeys_purpose_id, safe="-")
        return {
            email: batch.Part(
                method="POST",
                url=f"{self.base}/{CONSENT_SET}",
                body={
                    CONTACT_POINT: email,
                    "msdynmkt_contactpointtype": EMAIL_CHANNEL,
                    "msdynmkt_contactpointconsenttype": PURPOSE_CONSENT,
                    "msdynmkt_value": OPTED_OUT,
                    "msdynmkt_purposeId@odata.bind": f"/msdynmkt_purposes({purpose})",
                },
            )
            for email in emails
            if email.lower() not in held
        }

    def _opted_out_already(self, emails: Iterable[str]) -> set[str]:
        """The addresses (lower case) with an opted-out email record already."""
        values = quote(json.dumps(sorted(emails), separators=(",", ":")), safe="")
        url = (
            f"{self.base}/{CONSENT_SET}?$select={CONTACT_POINT}"
            f"&$filter=msdynmkt_contactpointtype eq {EMAIL_CHANNEL}"
            f" and msdynmkt_value eq {OPTED_OUT}"
            " and Microsoft.Dynamics.CRM.In(PropertyName=@p1,PropertyValues=@p2)"
            f"&@p1={quote(batch.odata_string(CONTACT_POINT), safe='')}&@p2={values}"
        ).replace(" ", "%20")
        response = self.transport.request("GET", url, headers=ODATA)
        body = response_body(response)
        if response.status_code >= 400 or not isinstance(body, dict):
            raise RetryableError(
                f"{self.name}: reading consent records HTTP {response.status_code}"
            )
        return {
            str(row.get(CONTACT_POINT) or "").lower()
            for row in body.get("value") or []
            if isinstance(row, dict)
        }


def with_consent_answers(
    leads: Sequence[Lead],
    results: list[PushResult],
    parts: dict[str, batch.Part],
    answers: Sequence[Any],
) -> list[PushResult]:
    """Each lead's result with its address's consent record answer: a refusal is recorded on
    the lead (`dropped["journeys_consent"]`) while the lead itself landed; throttled or a
    server error leaves the lead to go again, so the record is tried again."""
    failed: dict[str, tuple[int, str]] = {}
    for email, answer in zip(parts, answers, strict=True):
        status = answer.status if isinstance(answer, batch.Part) else 0
        if not 200 <= status < 300:
            body = answer.body if isinstance(answer, batch.Part) else None
            error = body.get("error", {}) if isinstance(body, dict) else {}
            why = f"consent record: {status} {error.get('code', '')} {error.get('message', '')}"
            failed[email] = (status, why.strip())
    out = []
    for lead, result in zip(leads, results, strict=True):
        status, why = failed.get(lead.email or "", (0, ""))
        if not why or not result.ok:
            out.append(result)
        elif status in RETRYABLE:
            update = {"ok": False, "error_class": Outcome.RETRYABLE, "error": why}
            out.append(result.model_copy(update=update))
        else:
            dropped = {**result.dropped, "journeys_consent": why}
            out.append(result.model_copy(update={"dropped": dropped}))
    return out
