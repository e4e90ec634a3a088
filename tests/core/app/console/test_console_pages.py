"""The operator console through real WSGI requests to the daemon's app (werkzeug's client):
sign-in, roles, CSRF, the audit log, every page, and hostile lead values escaped."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from sqlalchemy import select
from werkzeug.test import Client

from leadbridge.connectors.salesforce import sandbox as sf_sandbox
from leadbridge.core.app.console import auth
from leadbridge.core.app.console.app import target_light
from leadbridge.core.app.http_app import App
from leadbridge.core.store import state
from leadbridge.core.store.tables import console_users, dead_letters, events, leads

from .conftest import HOSTILE_COMPANY, HOSTILE_NAME, World, csrf_of, login_form, sign_in


def _open_letters(world: World) -> list[Any]:
    with world.store.connect() as conn:
        return list(conn.execute(select(dead_letters).where(dead_letters.c.resolved_at.is_(None))))


def test_no_page_and_no_personal_data_before_sign_in(world: World) -> None:
    http = world.client()
    for path in ("/console/", "/console/leads?email=a%40b.c", "/console/dead-letters"):
        response = http.get(path)
        assert response.status_code == 303
        assert response.headers["Location"].startswith("/console/login?next=/console/")
    assert http.post("/console/dead-letters/replay", data={"target": "sales"}).status_code == 403
    assert len(_open_letters(world)) == 1
    # the daemon's other endpoints answer as before
    assert http.get("/healthz").status_code == 200
    assert http.get("/metrics").status_code == 200
    assert http.post("/marketplace/leads/nope", data=b"{}").status_code == 401


def test_the_console_is_off_unless_enabled(world: World) -> None:
    http = Client(App(world.store, [], ["sales"]))  # what the daemon mounts without the key
    assert http.get("/console/login").status_code == 404


def test_a_wrong_password_is_refused_and_the_cookie_is_locked_down(world: World) -> None:
    http = world.client()
    refused = login_form(http, "olga", "nope")
    assert refused.status_code == 401 and "Wrong user name or password" in refused.text
    assert login_form(http, "ghost", "x").status_code == 401
    ok = login_form(http, "olga")
    [cookie] = [c for c in ok.headers.getlist("Set-Cookie") if c.startswith(f"{auth.COOKIE}=")]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=28800" in cookie
    with world.store.connect() as conn:
        stored = conn.execute(select(console_users.c.password_hash)).scalars().all()
    assert all(h.startswith("$argon2id$") for h in stored)


def test_a_tampered_cookie_is_no_session(world: World) -> None:
    http = world.client()
    sign_in(http, "victor")
    forged = auth.Sessions("another key", 3600).make("victor", auth.Role.operator)[1]
    http.set_cookie(auth.COOKIE, forged, path="/console/")
    assert http.get("/console/").status_code == 303


def test_an_operator_replays_and_the_target_turns_green(world: World) -> None:
    http = world.client()
    sign_in(http, "olga")
    overview = http.get("/console/")
    assert overview.status_code == 200
    assert 'data-target="sales" data-state="red"' in overview.text
    assert "1 dead letter(s) waiting" in overview.text
    assert "<td>capture</td><td>12</td>\n<td>12</td><td>1</td>" in overview.text  # today, held

    page = http.get("/console/dead-letters?target=sales")
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in page.text  # the CRM's own answer
    sf_sandbox.REJECT_MARKER, rule = "never-matches", sf_sandbox.REJECT_MARKER  # admin fixes
    try:
        done = http.post(
            "/console/dead-letters/replay", data={"target": "sales", "csrf": csrf_of(page.text)}
        )
    finally:
        sf_sandbox.REJECT_MARKER = rule
    assert done.status_code == 303 and "1%20dead%20letter" in done.headers["Location"]
    assert _open_letters(world) == []
    assert 'data-target="sales" data-state="green"' in http.get("/console/").text

    audit = http.get("/console/audit").text
    assert "replayed dead letters" in audit and "olga" in audit
    [letter_key] = _resolved_keys(world)
    lineage = http.get(f"/console/leads/{letter_key}").text
    assert "dead_letter" in lineage and "replayed" in lineage and "olga" in lineage


def _resolved_keys(world: World) -> list[str]:
    with world.store.connect() as conn:
        return list(conn.execute(select(dead_letters.c.lead_key)).scalars())


def test_a_viewer_reads_but_may_not_replay(world: World) -> None:
    http = world.client()
    sign_in(http, "victor")
    page = http.get("/console/dead-letters")
    assert page.status_code == 200 and 'class="replay"' not in page.text
    refused = http.post(
        "/console/dead-letters/replay", data={"target": "sales", "csrf": csrf_of(page.text)}
    )
    assert refused.status_code == 403 and "victor is a viewer" in refused.text
    assert len(_open_letters(world)) == 1


def test_a_forged_form_without_the_csrf_token_is_refused(world: World) -> None:
    http = world.client()
    sign_in(http, "olga")
    for data in ({"target": "sales"}, {"target": "sales", "csrf": "guessed"}):
        refused = http.post("/console/dead-letters/replay", data=data)
        assert refused.status_code == 403 and "CSRF" in refused.text
    assert len(_open_letters(world)) == 1


def test_discard_needs_a_reason_and_lands_in_history_and_audit(world: World) -> None:
    http = world.client()
    sign_in(http, "olga")
    [letter] = _open_letters(world)
    token = csrf_of(http.get("/console/dead-letters").text)
    url = f"/console/dead-letters/{letter.id}/discard"
    assert http.post(url, data={"csrf": token, "reason": " "}).status_code == 400
    assert (
        http.post(url, data={"csrf": token, "reason": "duplicate of a CRM record"}).status_code
        == 303
    )
    assert _open_letters(world) == []
    assert "duplicate of a CRM record" in http.get("/console/audit").text
    assert "duplicate of a CRM record" in http.get(f"/console/leads/{letter.lead_key}").text
    assert http.post(url, data={"csrf": token, "reason": "again"}).status_code == 404


def test_hostile_lead_values_render_escaped(world: World) -> None:
    http = world.client()
    sign_in(http, "victor")
    with world.store.connect() as conn:
        key = conn.execute(
            select(leads.c.lead_key).where(leads.c.data.contains("onerror"))
        ).scalar_one()
    for path in (f"/console/leads/{key}", "/console/leads?stage=" + _stage(world, key)):
        page = http.get(path).text
        assert "<script>alert" not in page and "<img src=x" not in page
        assert html.escape(HOSTILE_NAME, quote=False) in page.replace("&#39;", "'")
    lead_page = http.get(f"/console/leads/{key}")
    assert HOSTILE_COMPANY[:40] in lead_page.text  # the RTL mark is text, isolated by CSS
    assert "default-src 'self'" in lead_page.headers["Content-Security-Policy"]


def _stage(world: World, key: str) -> str:
    with world.store.connect() as conn:
        return str(conn.execute(select(leads.c.stage).where(leads.c.lead_key == key)).scalar_one())


def test_leads_search_quarantine_funnel_and_lineage_pages(world: World) -> None:
    http = world.client()
    sign_in(http, "victor")
    with world.store.connect() as conn:
        row = conn.execute(select(leads.c.lead_key, leads.c.email).limit(1)).one()
    found = http.get(f"/console/leads?email={row.email}")
    assert found.status_code == 200 and row.lead_key in found.text
    lineage = http.get(f"/console/leads/{row.lead_key}")
    assert lineage.status_code == 200 and 'id="history"' in lineage.text
    assert http.get("/console/leads/" + "0" * 32).status_code == 404
    quarantine = http.get("/console/quarantine")
    assert quarantine.status_code == 200 and "test" in quarantine.text  # Microsoft's test lead
    raw_id = re.search(r"quarantine\?raw=(\d+)", quarantine.text).group(1)  # type: ignore[union-attr]
    record = http.get(f"/console/quarantine?raw={raw_id}").text
    assert '"payload"' in record and "UserDetails" in record  # the record as it landed
    funnel = http.get("/console/funnel?period=year&by=offer")
    assert funnel.status_code == 200 and "period=year&amp;by=offer" in funnel.text
    report = http.get("/console/funnel/report?period=year&by=offer")
    assert report.status_code == 200 and "Marketplace lead funnel" in report.text


def test_an_operator_reprocesses_a_fixable_quarantined_record(world: World) -> None:
    http = world.client()
    sign_in(http, "olga")
    page = http.get("/console/quarantine?reason=test")
    assert 'id="reprocess-all"' in page.text
    done = http.post(
        "/console/quarantine/reprocess", data={"reason": "test", "csrf": csrf_of(page.text)}
    )
    assert done.status_code == 303
    audit = http.get("/console/audit").text
    assert "re-processed quarantined raw leads" in audit


def test_target_light_says_why() -> None:
    assert target_light({"health": {"state": "fatal", "message": "401"}})[0] == "red"
    assert target_light({"health": {"state": "ok"}, "paused": {"until": "t", "why": "429"}}) == (
        "amber",
        "paused until t: 429",
    )
    assert target_light({"health": {"state": "unknown"}, "dead_letters": 0})[0] == "amber"
    assert target_light({"health": {"state": "ok"}, "outbox": 3}) == ("green", "3 pending")
    assert json.dumps(target_light({"health": {"state": "ok"}, "dead_letters": 2}))


def test_the_overview_shows_last_success_and_the_last_hour_from_the_store(world: World) -> None:
    http = world.client()
    sign_in(http, "victor")
    with world.store.connect() as conn:
        pushes = conn.execute(select(events.c.data).where(events.c.kind == "push")).scalars()
        oks = sum(1 for p in pushes if p["ok"])
    page = http.get("/console/").text
    row = page.split('data-target="sales"', 1)[1].split("</tr>", 1)[0]
    assert f'<td class="hour-pushed">{oks}</td>' in row and oks > 0
    assert '<td class="hour-failed red">1</td>' in row  # the dead letter
    assert "none in" not in row.split('class="last-success">', 1)[1].split("</td>", 1)[0]
    with world.store.connect() as conn:  # the delivery runs' API calls, counted in the store
        [counted] = (state.get_json(conn, state.target_calls("sales")) or {})["hours"].values()
    assert counted["calls"] > 0
    shown = f'<td class="calls-this-hour">{counted["calls"]} ({counted["errors"]})</td>'
    assert shown in row
    assert '<td class="calls-hour-before">0 (0)</td>' in row


def test_leads_search_by_company(world: World) -> None:
    http = world.client()
    sign_in(http, "victor")
    found = http.get("/console/leads?company=sandbox_reject").text  # any case; _ literal
    assert "1 found" in found and "SANDBOX_REJECT GmbH" in found
    assert "0 found" in http.get("/console/leads?company=sandbox%25reject").text
    page = http.get("/console/leads?company=" + "%E2%80%AEevil").text  # the RTL override
    assert "1 found" in page and "<script>alert" not in page
