"""The console's routes: a WSGI app under /console/, server-rendered with Jinja2.

Every page needs a signed-in user; every POST needs an operator (or, for logout, any user)
and the session's CSRF token. The sign-in form has its own pre-session CSRF token, and
failed sign-ins are throttled per user name and per client address (throttle.py); when
`console.oidc` is configured, users may sign in with Entra ID instead (oidc.py). Changes
go through core/app/operations.py with the user's name as the actor — the same functions
the CLI calls — and each one is written to the audit log. Pages read the store through
core/app/views.py and queries.py, with indexed queries and a row limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Connection, func, literal_column, select
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from leadbridge.core.app import operations, views
from leadbridge.core.app import status as store_status
from leadbridge.core.app.console import auth, oidc, queries, throttle
from leadbridge.core.app.console.queries import PAGE_ROWS
from leadbridge.core.domain.console import OIDC_CALLBACK_PATH
from leadbridge.core.domain.vocabulary import QuarantineReason
from leadbridge.core.reports import funnel as funnel_report
from leadbridge.core.reports import html as funnel_html
from leadbridge.core.settings import Settings
from leadbridge.core.store import state
from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.store.tables import quarantine, raw_leads

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("leadbridge.console")
PREFIX = "/console"
PERIODS = ("month", "quarter", "half", "year")
GROUPINGS = ("", "offer", "source", "action", "target", "grade")
_TEMPLATES = Path(__file__).parent / "templates"
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'self'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # personal data: never in a shared cache
}

_ROUTES = Map(
    [
        Rule(f"{PREFIX}/", endpoint="overview", methods=["GET"]),
        Rule(f"{PREFIX}/login", endpoint="login", methods=["GET", "POST"]),
        Rule(f"{PREFIX}/logout", endpoint="logout", methods=["POST"]),
        Rule(f"{PREFIX}/oidc/start", endpoint="oidc_start", methods=["GET"]),
        Rule(OIDC_CALLBACK_PATH, endpoint="oidc_callback", methods=["GET"]),
        Rule(f"{PREFIX}/dead-letters", endpoint="dead_letters", methods=["GET"]),
        Rule(f"{PREFIX}/dead-letters/replay", endpoint="replay", methods=["POST"]),
        Rule(
            f"{PREFIX}/dead-letters/<int:letter_id>/discard", endpoint="discard", methods=["POST"]
        ),
        Rule(f"{PREFIX}/leads", endpoint="leads", methods=["GET"]),
        Rule(f"{PREFIX}/leads/<lead_key>", endpoint="lead", methods=["GET"]),
        Rule(f"{PREFIX}/quarantine", endpoint="quarantine", methods=["GET"]),
        Rule(f"{PREFIX}/quarantine/reprocess", endpoint="reprocess", methods=["POST"]),
        Rule(f"{PREFIX}/funnel", endpoint="funnel", methods=["GET"]),
        Rule(f"{PREFIX}/funnel/report", endpoint="funnel_report", methods=["GET"]),
        Rule(f"{PREFIX}/audit", endpoint="audit", methods=["GET"]),
    ],
    strict_slashes=False,
)


class Refused(HTTPException):
    """A request the console turns down, with a page saying why."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


Handler = Callable[..., Response]


class Console:
    """The console as a WSGI app; `deliver_now` False leaves replayed letters to the daemon's
    delivery job (tests and the daemon's own thread budget choose). `login_throttle` counts this
    process's failed sign-ins (tests pass one with their own clock)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        deliver_now: bool = True,
        login_throttle: throttle.LoginThrottle | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.deliver_now = deliver_now
        key = auth.signing_key(store)
        self.sessions = auth.Sessions(key, int(settings.console.session_hours * 3600))
        self.login_tokens = auth.LoginTokens(key)
        self.throttle = login_throttle or throttle.LoginThrottle()
        oidc_settings = settings.console.oidc
        self.entra = oidc.EntraSignIn(oidc_settings, key) if oidc_settings else None
        self.jinja = Environment(
            loader=FileSystemLoader(_TEMPLATES),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, args = _ROUTES.bind_to_environ(environ).match()
            response = self._handle(request, endpoint, args)
        except Refused as exc:
            response = self._page(
                request, "refused.html", None, status=exc.code or 403, why=exc.description
            )
        except NotFound:
            response = self._page(request, "refused.html", None, status=404, why="no such page")
        except HTTPException as exc:
            response = exc.get_response(environ)
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        return response(environ, start_response)

    def _handle(self, request: Request, endpoint: str, args: Mapping[str, Any]) -> Response:
        if endpoint == "login":
            return self.login(request)
        if endpoint in ("oidc_start", "oidc_callback"):
            if self.entra is None:
                raise NotFound()
            handle: Callable[[Request, oidc.EntraSignIn], Response] = getattr(self, endpoint)
            return handle(request, self.entra)
        session = self.sessions.read(request.cookies.get(auth.COOKIE))
        if session is None:
            if request.method != "GET":
                raise Refused(403, "sign in first")
            target = quote(request.full_path.rstrip("?"), safe="/")
            return redirect(f"{PREFIX}/login?next={target}", code=303)
        if request.method == "POST":
            if not auth.csrf_ok(session, request.form.get("csrf")):
                raise Refused(403, "the form's CSRF token is missing or wrong: reload the page")
            if endpoint != "logout" and not session.may_change:
                raise Refused(403, f"{session.user} is a viewer: only an operator may do this")
        handler: Handler = getattr(self, endpoint)
        return handler(request, session, **args)

    # --- rendering ------------------------------------------------------------------------

    def _page(
        self,
        request: Request,
        template: str,
        session: auth.Session | None,
        *,
        status: int = 200,
        **context: Any,
    ) -> Response:
        html = self.jinja.get_template(template).render(
            session=session, prefix=PREFIX, notice=request.args.get("notice"), **context
        )
        return Response(html, status=status, mimetype="text/html")

    def _done(self, path: str, notice: str) -> Response:
        """Post/redirect/get: the page again, with what happened."""
        sep = "&" if "?" in path else "?"
        return redirect(f"{PREFIX}{path}{sep}notice={quote(notice)}", code=303)

    # --- sign-in --------------------------------------------------------------------------

    def login(self, request: Request) -> Response:
        """The sign-in form, and its POST: form token first (a forged login never reaches
        the password check or the counters), then the throttle, then the password."""
        next_path = _next_path(request)
        if request.method == "GET":
            return self._login_form(request, next_path)
        cookie = request.cookies.get(auth.LOGIN_COOKIE)
        if not self.login_tokens.ok(cookie, request.form.get("csrf")):
            raise Refused(403, "the sign-in form's CSRF token is missing or wrong: reload the page")
        name = request.form.get("username", "")[: auth.NAME_MAX]
        keys = [throttle.user_key(name), throttle.address_key(request.remote_addr)]
        wait = self.throttle.retry_after(keys)
        if wait is not None:
            return self._throttled(request, next_path, wait)
        role = auth.check_password(self.store, name, request.form.get("password", ""))
        if role is None:
            return self._login_failed(request, next_path, name, keys)
        self.throttle.succeeded(keys[0])
        return self._signed_in(name, role, next_path)

    def _login_form(
        self, request: Request, next_path: str, *, status: int = 200, **context: Any
    ) -> Response:
        """The form with a pre-session CSRF token: the cookie's while it is valid (two tabs
        both work), else a new one."""
        cookie = request.cookies.get(auth.LOGIN_COOKIE)
        token = self.login_tokens.read(cookie)
        if token is None:
            token, cookie = self.login_tokens.make()
        context = {"failed": False, "blocked": None, "entra": self.entra is not None} | context
        response = self._page(
            request, "login.html", None, status=status, next=next_path, csrf=token, **context
        )
        self._set_cookie(response, auth.LOGIN_COOKIE, cookie or "", self.login_tokens.max_age_s)
        return response

    def _login_failed(
        self, request: Request, next_path: str, name: str, keys: list[str]
    ) -> Response:
        """Counted, logged and audited without the password; the name only when it is a
        user's (a password typed into the name field must not reach the audit log)."""
        blocked = self.throttle.failed(keys)
        log.info("console sign-in refused", extra={"throttled": bool(blocked)})
        with self.store.begin() as conn:
            actor = name if auth.is_user(conn, name) else "(unknown name)"
            auth.audit(conn, actor, "sign-in refused", {"why": "wrong user name or password"})
            if blocked:  # which counter, never the address itself (personal data)
                what = " and ".join(_BLOCKED[kind] for kind in blocked)
                detail = {"for": what, "minutes": _minutes(self.throttle)}
                auth.audit(conn, actor, "sign-ins blocked", detail)
        return self._login_form(request, next_path, status=401, failed=True)

    def _throttled(self, request: Request, next_path: str, wait: float) -> Response:
        """429 with when to come back; the password was not even checked."""
        minutes = max(1, round(wait / 60))
        response = self._login_form(
            request,
            next_path,
            status=429,
            blocked=f"Too many failed sign-ins for this user name or from this address: "
            f"try again in {minutes} minute(s).",
        )
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response

    def _signed_in(
        self,
        name: str,
        role: auth.Role,
        next_path: str,
        *,
        via: str | None = None,
        request: Request | None = None,
    ) -> Response:
        """The session cookie and the way on. After a provider's callback the way on is a
        page that moves itself along (`request` given), not a redirect: browsers treat a
        redirect that continues a cross-site navigation as cross-site and would not send
        the SameSite=Strict session cookie with it."""
        _, token = self.sessions.make(name, role)
        with self.store.begin() as conn:
            detail = {"role": role.value} | ({"via": via} if via else {})
            auth.audit(conn, name, "signed in", detail)
        if request is None:
            response = redirect(next_path, code=303)
        else:
            response = self._page(request, "continue.html", None, next=next_path)
        self._set_cookie(response, auth.COOKIE, token, self.sessions.max_age_s)
        response.delete_cookie(auth.LOGIN_COOKIE, path=f"{PREFIX}/")  # used: never again
        return response

    def _set_cookie(
        self,
        response: Response,
        name: str,
        value: str,
        max_age: int,
        samesite: str = "Strict",
    ) -> None:
        """Every console cookie: HttpOnly, SameSite=Strict (the provider's flow cookie:
        Lax), Secure unless configured off."""
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=f"{PREFIX}/",
            httponly=True,
            samesite=samesite,
            secure=self.settings.console.secure_cookies,
        )

    # --- sign-in with Entra ID (oidc.py) ------------------------------------------------------

    def oidc_start(self, request: Request, entra: oidc.EntraSignIn) -> Response:
        """To the provider, with the flow in a cookie for the way back."""
        try:
            auth_uri, cookie = entra.start(_next_path(request))
        except oidc.SignInRefused as exc:
            log.warning("console sign-in with Entra ID not started", extra=exc.detail)
            raise Refused(exc.status, exc.why) from None
        response = redirect(auth_uri, code=303)
        self._set_cookie(response, oidc.FLOW_COOKIE, cookie, oidc.FLOW_S, samesite="Lax")
        return response

    def oidc_callback(self, request: Request, entra: oidc.EntraSignIn) -> Response:
        """The provider's answer: the flow cookie is spent whatever happens; a valid
        sign-in gets the same session cookie as a local user."""
        started = entra.read_flow(request.cookies.get(oidc.FLOW_COOKIE))
        if started is None:  # no sign-in of this browser's in progress: not audited
            response = self._page(
                request,
                "refused.html",
                None,
                status=403,
                why="No sign-in with Entra ID was started in this browser in the last "
                f"{oidc.FLOW_S // 60} minutes: start again from the sign-in page.",
            )
        else:
            flow, next_path = started
            try:
                who = entra.finish(flow, request.args)
            except oidc.SignInRefused as exc:
                response = self._oidc_refused(request, exc)
            else:
                response = self._signed_in(
                    who.user, who.role, next_path, via="entra id", request=request
                )
        response.delete_cookie(oidc.FLOW_COOKIE, path=f"{PREFIX}/")
        return response

    def _oidc_refused(self, request: Request, exc: oidc.SignInRefused) -> Response:
        """Audited and logged with the refusal's codes only; the page says why."""
        log.info("console sign-in with Entra ID refused", extra={"why": exc.detail["why"]})
        with self.store.begin() as conn:
            auth.audit(conn, exc.actor, "sign-in refused", exc.detail)
        return self._page(request, "refused.html", None, status=exc.status, why=exc.why)

    def logout(self, request: Request, session: auth.Session) -> Response:
        response = redirect(f"{PREFIX}/login", code=303)
        response.delete_cookie(auth.COOKIE, path=f"{PREFIX}/")
        return response

    # --- overview -------------------------------------------------------------------------

    def overview(self, request: Request, session: auth.Session) -> Response:
        with self.store.connect() as conn:
            data = store_status.status(
                conn,
                [s.name for s in self.settings.sources],
                [t.name for t in self.settings.targets],
                self.settings.cluster.stalled_after,
            )
            today = source_today(conn, [s.name for s in self.settings.sources])
            checked = {
                k: r.updated_at for k, r in state.every_updated(conn, "target_health").items()
            }
            activity = queries.target_activity(conn, list(data["targets"]), utcnow())
        targets = [
            {
                "name": name,
                **row,
                **activity[name],
                "light": target_light(row),
                "checked_at": checked.get(name),
            }
            for name, row in data["targets"].items()
        ]
        return self._page(
            request,
            "overview.html",
            session,
            data=data,
            targets=targets,
            replicas=data["replicas"],
            today=today,
            lookback_days=queries.SUCCESS_LOOKBACK.days,
        )

    # --- dead letters ---------------------------------------------------------------------

    def dead_letters(self, request: Request, session: auth.Session) -> Response:
        target = request.args.get("target") or None
        reason = request.args.get("reason") or None
        with self.store.connect() as conn:
            rows = views.dead_letter_rows(conn, target)
            targets = sorted(
                views.dead_letter_targets(conn) | {t.name for t in self.settings.targets}
            )
        reasons = sorted({r["error_class"] for r in rows if r["error_class"]})
        if reason:
            rows = [r for r in rows if r["error_class"] == reason]
        return self._page(
            request,
            "dead_letters.html",
            session,
            rows=rows[:PAGE_ROWS],
            total=len(rows),
            targets=targets,
            reasons=reasons,
            target=target,
            reason=reason,
        )

    def replay(self, request: Request, session: auth.Session) -> Response:
        letter = request.form.get("letter_id")
        target = request.form.get("target") or None
        try:
            ids = [int(letter)] if letter else None
        except ValueError:
            raise Refused(400, "not a dead letter id") from None
        try:
            done = operations.replay_dead_letters(
                self.settings,
                self.store,
                letter_ids=ids,
                target=target if ids is None else None,
                actor=session.user,
                deliver_now=self.deliver_now,
            )
        except operations.UnknownTarget as exc:
            raise Refused(400, str(exc)) from None
        with self.store.begin() as conn:
            auth.audit(
                conn,
                session.user,
                "replayed dead letters",
                {"dead_letter": ids[0] if ids else None, "target": target, "count": done.replayed},
            )
        return self._done("/dead-letters", f"{done.replayed} dead letter(s) replayed")

    def discard(self, request: Request, session: auth.Session, letter_id: int) -> Response:
        reason = request.form.get("reason", "").strip()[:500]
        if not reason:
            raise Refused(400, "say why you discard it: the reason goes into the lead's history")
        found = operations.discard_dead_letter(
            self.store, letter_id, actor=session.user, reason=reason
        )
        if not found:
            raise Refused(404, f"no open dead letter {letter_id}")
        with self.store.begin() as conn:
            auth.audit(
                conn,
                session.user,
                "discarded a dead letter",
                {"dead_letter": letter_id, "reason": reason},
            )
        return self._done("/dead-letters", f"dead letter {letter_id} discarded")

    # --- leads ----------------------------------------------------------------------------

    def leads(self, request: Request, session: auth.Session) -> Response:
        asked: dict[str, Any] = {
            "email": request.args.get("email", "").strip().lower(),
            "offer": request.args.get("offer", "").strip(),
            "stage": request.args.get("stage", "").strip().lower(),
            "company": request.args.get("company", "").strip(),
        }
        rows: list[dict[str, Any]] = []
        if any(asked.values()):
            with self.store.connect() as conn:
                rows = queries.search_leads(conn, **asked)
        return self._page(
            request,
            "leads.html",
            session,
            rows=rows,
            searched=any(asked.values()),
            limit=PAGE_ROWS,
            **asked,
        )

    def lead(self, request: Request, session: auth.Session, lead_key: str) -> Response:
        with self.store.connect() as conn:
            found = views.find_leads(conn, lead_key)
            if len(found) != 1:
                raise NotFound()
            story = views.lead_story(conn, found[0])
        return self._page(request, "lead.html", session, story=story)

    # --- quarantine -----------------------------------------------------------------------

    def quarantine(self, request: Request, session: auth.Session) -> Response:
        reason = request.args.get("reason") or None
        with self.store.connect() as conn:
            rows = views.list_quarantine(conn, reason)[:PAGE_ROWS]
            raw_id = request.args.get("raw", "")
            raw = raw_record(conn, int(raw_id)) if raw_id.isdigit() else None
        fixable = sorted(r.value for r in operations.FIXABLE)
        return self._page(
            request,
            "quarantine.html",
            session,
            rows=rows,
            reason=reason,
            raw=raw,
            fixable=fixable,
            reasons=[r.value for r in QuarantineReason],
        )

    def reprocess(self, request: Request, session: auth.Session) -> Response:
        raw_id = request.form.get("raw_lead_id", "")
        reason_text = request.form.get("reason", "")
        reason = next((r for r in operations.FIXABLE if r.value == reason_text), None)
        if not raw_id.isdigit() and reason is None:
            raise Refused(400, "name a raw lead, or a fixable reason")
        done = operations.reprocess_quarantined(
            self.settings,
            self.store,
            raw_ids=[int(raw_id)] if raw_id.isdigit() else None,
            reason=reason,
            actor=session.user,
        )
        with self.store.begin() as conn:
            auth.audit(
                conn,
                session.user,
                "re-processed quarantined raw leads",
                {"raw_lead": raw_id or None, "reason": reason_text or None, "count": done.released},
            )
        return self._done("/quarantine", f"{done.released} raw lead(s) processed again")

    # --- funnel and audit -----------------------------------------------------------------

    def funnel(self, request: Request, session: auth.Session) -> Response:
        period, by = _funnel_choice(request)
        return self._page(
            request,
            "funnel.html",
            session,
            period=period,
            by=by,
            periods=PERIODS,
            groupings=GROUPINGS,
        )

    def funnel_report(self, request: Request, session: auth.Session) -> Response:
        """The report's own HTML page (core/reports/html.py), for the funnel page's frame."""
        period, by = _funnel_choice(request)
        chosen = funnel_report.period_for(period, datetime.now(UTC).date())
        with self.store.snapshot() as conn:
            report = funnel_report.funnel(
                conn, chosen, by=by or None, sla_hours=self.settings.reports.sla_hours
            )
        return Response(funnel_html.render(report), mimetype="text/html")

    def audit(self, request: Request, session: auth.Session) -> Response:
        with self.store.connect() as conn:
            rows = auth.audit_rows(conn, PAGE_ROWS)
        return self._page(request, "audit.html", session, rows=rows)


_BLOCKED = {"user": "the user name", "addr": "the client address"}


def _next_path(request: Request) -> str:
    """Where to go after sign-in: a console page, never anywhere else (no open redirect)."""
    next_path = request.values.get("next", f"{PREFIX}/")
    if not next_path.startswith(f"{PREFIX}/") or next_path.startswith("//"):
        return f"{PREFIX}/"
    return next_path


def _minutes(counter: throttle.LoginThrottle) -> int:
    return round(counter.cooldown_s / 60)


def _funnel_choice(request: Request) -> tuple[str, str]:
    period = request.args.get("period", "quarter")
    by = request.args.get("by", "")
    return (period if period in PERIODS else "quarter", by if by in GROUPINGS else "")


def target_light(row: dict[str, Any]) -> tuple[str, str]:
    """Red, amber or green for a target, and why: red when its credentials or config were
    refused or leads sit in its dead letters, amber while paused or not yet heard from."""
    health = row.get("health") or {}
    if health.get("state") == "fatal":
        return "red", f"fatal: {health.get('message') or 'refused'}"
    if row.get("dead_letters"):
        return "red", f"{row['dead_letters']} dead letter(s) waiting"
    if row.get("paused"):
        paused = row["paused"]
        return "amber", f"paused until {paused.get('until')}: {paused.get('why') or ''}".strip()
    if health.get("state") in (None, "unknown"):
        return "amber", "no delivery yet"
    return "green", f"{row.get('outbox', 0)} pending"


def raw_record(conn: Connection, raw_id: int) -> dict[str, Any] | None:
    """`raw_story` and the record exactly as it landed (redacted once past its retention)."""
    story = views.raw_story(conn, raw_id)
    if story is not None:
        story["payload"] = conn.execute(
            select(raw_leads.c.payload).where(raw_leads.c.id == raw_id)
        ).scalar_one()
    return story


def source_today(conn: Connection, names: list[str]) -> dict[str, dict[str, int]]:
    """Per source: raw leads landed since midnight UTC (received_at is indexed) and raw
    leads in quarantine now."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    # grouped by `source || ''`, not `source`: SQLite would otherwise walk the whole
    # (source, source_key) index to group in order, every raw lead ever, instead of
    # today's few through ix_raw_leads_received_at (bench/console.py: 450 ms → 3 ms)
    source = raw_leads.c.source.concat(literal_column("''"))
    landed = {
        name: count
        for name, count in conn.execute(
            select(source, func.count()).where(raw_leads.c.received_at >= midnight).group_by(source)
        )
    }
    held = {
        source: count
        for source, count in conn.execute(
            select(raw_leads.c.source, func.count())
            .select_from(quarantine.join(raw_leads, raw_leads.c.id == quarantine.c.raw_lead_id))
            .group_by(raw_leads.c.source)
        )
    }
    return {n: {"today": landed.get(n, 0), "quarantined": held.get(n, 0)} for n in names}
