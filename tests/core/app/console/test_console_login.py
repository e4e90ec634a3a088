"""Signing in to the console: the sign-in form's own CSRF token (double submit, signed
cookie), and failed sign-ins throttled per user name and per client address, audited
without the password."""

from __future__ import annotations

from sqlalchemy import select

from leadbridge.core.app.console import auth
from leadbridge.core.app.console.throttle import LoginThrottle
from leadbridge.core.store.tables import console_audit

from .conftest import PASSWORD, World, csrf_of, login_form, sign_in


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _audit(world: World) -> list[tuple[str, str, str]]:
    with world.store.connect() as conn:
        rows = conn.execute(select(console_audit).order_by(console_audit.c.id))
        return [(r.actor, r.action, str(r.detail)) for r in rows]


def test_a_forged_login_without_the_form_token_is_refused(world: World) -> None:
    http = world.client()
    no_token = http.post("/console/login", data={"username": "olga", "password": PASSWORD})
    assert no_token.status_code == 403 and "CSRF" in no_token.text
    assert auth.COOKIE not in no_token.headers.get("Set-Cookie", "")
    # a token the attacker fetched for themselves is no good without its cookie
    token = csrf_of(world.client().get("/console/login").text)
    stolen = http.post(
        "/console/login", data={"username": "olga", "password": PASSWORD, "csrf": token}
    )
    assert stolen.status_code == 403
    # nor the cookie with another token
    http.get("/console/login")
    wrong = http.post(
        "/console/login", data={"username": "olga", "password": PASSWORD, "csrf": "guessed"}
    )
    assert wrong.status_code == 403
    assert http.get("/console/").status_code == 303  # still nobody signed in
    assert not [a for a in _audit(world) if a[1] == "signed in"]


def test_the_form_token_cookie_is_locked_down_and_spent_on_sign_in(world: World) -> None:
    http = world.client()
    form = http.get("/console/login")
    cookie = form.headers["Set-Cookie"]
    assert cookie.startswith(f"{auth.LOGIN_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console/" in cookie
    # the form cookie is no session, under any name
    http.set_cookie(auth.COOKIE, cookie.split(";")[0].split("=", 1)[1], path="/console/")
    assert http.get("/console/").status_code == 303
    signed = login_form(http, "olga")
    assert signed.status_code == 303
    spent = [c for c in signed.headers.getlist("Set-Cookie") if c.startswith(auth.LOGIN_COOKIE)]
    assert spent and ("Max-Age=0" in spent[0] or "Expires=Thu, 01 Jan 1970" in spent[0])


def test_failed_sign_ins_for_a_name_are_throttled_then_allowed_again(world: World) -> None:
    clock = Clock()
    world.console.throttle = LoginThrottle(clock=clock)
    http = world.client()
    for _ in range(5):
        assert login_form(http, "olga", "guess").status_code == 401
    blocked = login_form(http, "olga")  # the right password, refused all the same
    assert blocked.status_code == 429 and "Too many failed sign-ins" in blocked.text
    assert int(blocked.headers["Retry-After"]) > 0
    assert http.get("/console/").status_code == 303
    clock.now += world.console.throttle.cooldown_s
    sign_in(http, "olga")  # back after the cool-down

    audit = _audit(world)
    refused = [a for a in audit if a[1] == "sign-in refused"]
    assert len(refused) == 5 and all(a[0] == "olga" for a in refused)
    blocks = [a for a in audit if a[1] == "sign-ins blocked"]
    assert [a[0] for a in blocks] == ["olga"] and "user name and the client address" in blocks[0][2]
    assert not [a for a in audit if "guess" in a[2] or PASSWORD in a[2]]


def test_failed_sign_ins_from_one_address_are_throttled(world: World) -> None:
    world.console.throttle = LoginThrottle(clock=Clock())
    http = world.client()
    for n in range(5):
        assert login_form(http, f"nobody{n}", "guess").status_code == 401
    assert login_form(http, "victor").status_code == 429  # same address, any name
    elsewhere = world.client()
    token = csrf_of(elsewhere.get("/console/login").text)
    signed = elsewhere.post(
        "/console/login",
        data={"username": "victor", "password": PASSWORD, "csrf": token},
        environ_overrides={"REMOTE_ADDR": "10.9.8.7"},
    )
    assert signed.status_code == 303
    audit = _audit(world)
    assert {a[0] for a in audit if a[1] == "sign-in refused"} == {"(unknown name)"}
    assert not [a for a in audit if "nobody" in a[0] + a[2]]  # a typed name may be a password
