"""Teams (Workflows) and Slack, as apprise formats them.

Teams: apprise's `workflows://host:port/workflow/signature` takes any host, so the message
goes over real HTTPS to a loopback receiver (a throwaway CA; `?verify=no`), and the test
reads the Adaptive Card that Teams would get. Slack: apprise's Slack plugin posts only to
https://hooks.slack.com, which cannot be pointed at loopback; the payload is checked on its
way out through `responses` (requests' own mock), nothing is sent.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import responses

from leadbridge.core.alerts.messages import Message
from leadbridge.core.alerts.send import notify, send_due
from leadbridge.core.alerts.watch import watch
from leadbridge.core.store import state
from leadbridge.core.store.repo import Store, utcnow
from tests.core.alerts.helpers import make_alert_settings
from tests.core.alerts.receiver import receiver


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_teams_gets_an_adaptive_card_through_its_workflow_url(tmp_path: Path) -> None:
    """The Workflows trigger URL and card shape: https://learn.microsoft.com/en-us/
    microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook and
    vendor-facts.md §6 (apprise plugins/workflows.py, Adaptive Card 1.4)."""
    with receiver(tls=True) as rx:
        url = f"workflows://127.0.0.1:{rx.port}/wf0123456789/s3cr3t-key?verify=no"
        settings = make_alert_settings(tmp_path, [{"name": "teams", "url": url}])
        store = Store(settings.store)
        now = utcnow()
        with store.begin() as conn:
            state.put_json(conn, state.target_health("crm"), {"state": "fatal"}, now)
        watch(store, settings, now)
        watch(store, settings, now + timedelta(minutes=11))
        report = send_due(store, settings.alerts, now=now + timedelta(minutes=11))
        assert report.channels[0].messages == 1
        [post] = rx.requests
        assert post.path.startswith("/workflows/wf0123456789/triggers/manual/paths/invoke?")
        assert "sig=s3cr3t-key" in post.path
        card = post.body["attachments"][0]
        assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
        texts = [b.get("text") for b in card["content"]["body"]]
        assert "Target down: crm" in texts


@responses.activate
def test_slack_gets_its_incoming_webhook_payload() -> None:
    """Slack incoming webhooks: POST JSON to https://hooks.slack.com/services/T…/B…/X…
    (https://api.slack.com/messaging/webhooks)."""
    responses.post(
        "https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7", body="ok"
    )  # Slack answers a plain "ok"
    answer = notify(
        "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7/#sales",
        Message("Hot lead: Contoso — contoso.crm", "**Contoso** asked to be contacted."),
        5,
    )
    assert answer.ok
    [call] = responses.calls
    body = call.request.body
    payload = body.decode() if isinstance(body, bytes) else str(body)
    assert '"channel": "#sales"' in payload
    assert "Hot lead: Contoso" in payload and "asked to be contacted" in payload


def test_a_url_apprise_cannot_load_is_a_failed_answer_not_a_crash() -> None:
    answer = notify("nonsense://nowhere", Message("t", "b"), 1)
    assert not answer.ok and "cannot load" in answer.text
