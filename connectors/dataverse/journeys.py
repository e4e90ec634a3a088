"""Customer Insights – Journeys consent: an email opt-out written as an opted-out contact
point consent record, where CI-J is installed.

Real-time journeys read consent per contact point from `msdynmkt_contactpointconsent4`, not
from a lead's `donotemail` (vendor-facts §1.7), and the default Commercial purpose is
Nonrestrictive: an address with no record gets sent to ("ensure that any opt-outs that are
recorded in any external systems … are reflected appropriately in the consent center",
Microsoft's consent-record guide, MicrosoftDocs/customer-insights ci-docs/journeys/
consent-record-creation.md). So an opt-out leadbridge carries becomes an explicit record,
created in the same write `$batch` as the leads: `POST msdynmkt_contactpointconsent4s`
with the values that guide gives for a new row, as the table reference numbers them
(learn.microsoft.com/dynamics365/developer/reference/entities/msdynmkt_contactpointconsent4):
- `msdynmkt_contactpointvalue`: the email;
- `msdynmkt_contactpointtype` 534120000: Email;
- `msdynmkt_contactpointconsenttype` 534120000: Purpose (mandatory since June 2023);
- `msdynmkt_value` 534120002: Opted Out (534120001 is Opted In — never sent);
- `msdynmkt_logicalreason` 534119999: "No reasons" (the guide's choice; the Opt-out reasons
  are the person's words, which leadbridge doesn't have);
- `msdynmkt_source` 534120000: Internal (the guide's, and the column's default);
- `msdynmkt_reason` (Reason Description, free text): says leadbridge wrote it — the guide's
  way to tell one sync's records from another's and break loops;
- `msdynmkt_purposeId@odata.bind`: `/msdynmkt_purposes(<GUID>)`, the publisher's purpose
  (compliance profile > Consent Purposes), `journeys_purpose_id`.

The purpose is ApplicationRequired, which the API does not enforce (vendor-facts §1.3), but
a record without one is worth nothing: journeys check consent "for the specific purpose or
topic of the message" (same guide). So where CI-J is installed and no purpose is configured,
nothing is written and the lead's history says so, with the fix (never a silent skip).

Detected once per target: `GET EntityDefinitions(LogicalName='msdynmkt_contactpointconsent4')`
is 200 where CI-J is installed and 404 where it isn't (query-metadata-web-api.md: a table
definition retrieved by its LogicalName). Before writing, the opted-out records already
there for the batch's addresses are read (the `In` query function), so a re-delivery doesn't
stack duplicates and nothing is ever updated: a record someone else wrote, opted in or out,
is theirs.

Each lead's result says what happened, for its history: `consent["journeys_consent"]` a
record written; `dropped["consent:journeys"]` one Dataverse refused (core's consent sync
sends the lead again at its next run); `dropped["journeys_consent"]` CI-J installed but no
purpose configured, with the fix. Throttled or down leaves the lead queued.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
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
NO_REASONS = 534119999  # msdynmkt_logicalreason: No reasons
SOURCE_INTERNAL = 534120000  # msdynmkt_source: Internal
WRITTEN_BY = "leadbridge: opted out in another system"  # msdynmkt_reason, max 500
DONE_KEY, REFUSED_KEY, UNWRITTEN_KEY = "journeys_consent", "consent:journeys", "journeys_consent"
RETRYABLE = frozenset({0, 429, 500, 502, 503, 504})  # 0: no answer for it at all
ODATA = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}


# In a lead's payload (what a push is hashed on), never sent: Dataverse column names are
# letters, digits and underscores.
PURPOSE_MARK = "@journeys_purpose"


def withdrew_email(lead: Lead) -> bool:
    """As the canonical `opted_out_email`: an opt-out naming no channel withdrew them all."""
    return "email" in lead.opted_out_of or (lead.opted_out and not lead.opted_out_of)


class ConsentParts(dict[str, batch.Part]):
    """email → the POST creating its opted-out record; and, in `unwritten`, the addresses
    owed one that can't be written here, with why and the fix (for their leads' history)."""

    def __init__(self) -> None:
        super().__init__()
        self.unwritten: dict[str, str] = {}


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

    def consent_parts(self, leads: Sequence[Lead]) -> ConsentParts:
        """The opted-out records to create with this batch: one per address that withdrew
        email and has none yet. Nothing where CI-J isn't installed (the leads' own flags
        carry the opt-out there); where it is but no purpose is configured, the addresses
        are `unwritten`, with the fix."""
        parts = ConsentParts()
        emails = sorted({lead.email for lead in leads if lead.email and withdrew_email(lead)})
        if not emails:
            return parts
        purpose_id = self.config.journeys_purpose_id
        if not purpose_id:
            if self._installed_if_known():
                parts.unwritten = dict.fromkeys(emails, self._no_purpose())
            return parts
        if not self.journeys_installed():
            return parts
        held = self._opted_out_already(emails)
        purpose = quote(purpose_id, safe="-")
        for email in emails:
            if email.lower() not in held:
                parts[email] = batch.Part(
                    method="POST", url=f"{self.base}/{CONSENT_SET}", body=_record(email, purpose)
                )
        return parts

    def _installed_if_known(self) -> bool:
        """Detection for a target not configured for CI-J: a failure to tell must not hold
        up its leads (they land with their flags), so it counts as not found this time."""
        try:
            return self.journeys_installed()
        except RetryableError:
            return False

    def _no_purpose(self) -> str:
        return (
            "Customer Insights – Journeys is installed but no consent purpose is configured, "
            "so real-time journeys still see this address as not opted out: set "
            f"targets[{self.name}].journeys_purpose_id to the GUID of the purpose to opt out "
            "of (Customer Insights – Journeys > Settings > Compliance > the compliance "
            "profile > Consent Purposes, e.g. Commercial; the GUID ends the purpose's URL)"
        )

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


def _record(email: str, purpose: str) -> dict[str, Any]:
    """An opted-out purpose consent record for the address (the values: module docstring)."""
    return {
        CONTACT_POINT: email,
        "msdynmkt_contactpointtype": EMAIL_CHANNEL,
        "msdynmkt_contactpointconsenttype": PURPOSE_CONSENT,
        "msdynmkt_value": OPTED_OUT,
        "msdynmkt_logicalreason": NO_REASONS,
        "msdynmkt_source": SOURCE_INTERNAL,
        "msdynmkt_reason": WRITTEN_BY,
        "msdynmkt_purposeId@odata.bind": f"/msdynmkt_purposes({purpose})",
    }


def with_consent_answers(
    leads: Sequence[Lead],
    results: list[PushResult],
    parts: Mapping[str, batch.Part],
    answers: Sequence[Any],
) -> list[PushResult]:
    """Each lead's result with its address's consent record outcome, for its history: the
    record written (`consent`), refused (`dropped`, the lead itself landed: sent again at
    the next consent sync) or not writable here (`dropped`, with the fix); throttled or a
    server error leaves the lead to go again, so the record is tried again."""
    outcomes = {
        email: _outcome(answer, email) for email, answer in zip(parts, answers, strict=True)
    }
    unwritten: Mapping[str, str] = getattr(parts, "unwritten", {})
    out = []
    for lead, result in zip(leads, results, strict=True):
        email = lead.email or ""
        if not result.ok or (email not in outcomes and email not in unwritten):
            out.append(result)
        elif email in unwritten:
            dropped = {**result.dropped, UNWRITTEN_KEY: unwritten[email]}
            out.append(result.model_copy(update={"dropped": dropped}))
        else:
            out.append(_with_outcome(result, *outcomes[email]))
    return out


def _outcome(answer: Any, email: str) -> tuple[int, str]:
    """A consent POST's answer: its status, and what to say of it — for the lead's history,
    so the address Dataverse may quote is taken out."""
    status = answer.status if isinstance(answer, batch.Part) else 0  # 0: no answer at all
    if 200 <= status < 300:
        headers = (answer.headers or {}) if isinstance(answer, batch.Part) else {}
        entity = next((v for k, v in headers.items() if k.lower() == "odata-entityid"), "")
        record = entity.rsplit("(", 1)[-1].rstrip(")") if "(" in entity else "created"
        return status, f"opted-out contact point consent record {record}"
    body = answer.body if isinstance(answer, batch.Part) else None
    error = body.get("error", {}) if isinstance(body, dict) else {}
    why = f"consent record: {status} {error.get('code', '')} {error.get('message', '')}"
    return status, re.sub(re.escape(email), "<the address>", why.strip(), flags=re.IGNORECASE)


def _with_outcome(result: PushResult, status: int, said: str) -> PushResult:
    if 200 <= status < 300:
        consent = {**result.consent, DONE_KEY: said}
        return result.model_copy(update={"consent": consent})
    if status in RETRYABLE:
        return result.model_copy(
            update={"ok": False, "error_class": Outcome.RETRYABLE, "error": said}
        )
    dropped = {**result.dropped, REFUSED_KEY: f"{said} (asked again at the next consent sync)"}
    return result.model_copy(update={"dropped": dropped})
