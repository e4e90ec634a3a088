"""Who may use the console: users with argon2 password hashes, signed session cookies, CSRF.

Why these choices (docs/console.md):
- argon2id (argon2-cffi): the password-hashing competition's winner and OWASP's first
  choice; memory-hard, so a stolen store's hashes are costly to guess. bcrypt would do, but
  truncates passwords at 72 bytes.
- Sessions are signed cookies (itsdangerous, shipped with Flask's family and already
  installed), not server-side rows: every replica accepts them, nothing to clean up. The
  signing key lives in the store (`console_keys`) so all replicas share it.
- The CSRF token is random per session, carried inside the signed cookie and in each form;
  a POST is accepted only when the two match (compared in constant time).
- The sign-in form has no session yet, so its token is a pre-session one: random, in a
  cookie of its own signed under another salt, and in the form's hidden field (double
  submit). Signed, so a sibling site that can plant cookies still cannot plant a valid one;
  a login forged from elsewhere (login CSRF: signing the victim in as the attacker) is
  refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Connection, insert, select

from leadbridge.core.store.repo import Store, utcnow
from leadbridge.core.store.tables import console_audit, console_keys, console_users

COOKIE = "leadbridge_console"
LOGIN_COOKIE = "leadbridge_console_login"  # the sign-in form's CSRF token, before a session
LOGIN_FORM_S = 2 * 3600  # a sign-in form left open longer asks to be reloaded
_HASHER = PasswordHasher()
# verifying a name that does not exist costs as much as one that does: no user enumeration
_DUMMY_HASH = _HASHER.hash("not a password anyone has")
_SESSION_KEY = "session"
NAME_MAX = 100


class Role(StrEnum):
    viewer = "viewer"  # reads every page
    operator = "operator"  # and replays, discards, re-processes


class UserError(ValueError):
    """A user that cannot be added as asked (bad name, empty password)."""


@dataclass(frozen=True)
class Session:
    """A signed-in user, as the cookie carries it."""

    user: str
    role: Role
    csrf: str

    @property
    def may_change(self) -> bool:
        return self.role is Role.operator


def add_user(store: Store, name: str, role: Role, password: str) -> bool:
    """Add the user, or replace the role and password of an existing one; True if new."""
    name = name.strip()
    if not name or len(name) > NAME_MAX or not name.isprintable():
        raise UserError(f"a user name is 1 to {NAME_MAX} printable characters")
    if not password:
        raise UserError("the password is empty")
    values = {"role": role.value, "password_hash": _HASHER.hash(password)}
    with store.begin() as conn:
        found = conn.execute(
            select(console_users.c.name).where(console_users.c.name == name)
        ).first()
        if found:
            conn.execute(
                console_users.update().where(console_users.c.name == name).values(**values)
            )
        else:
            conn.execute(insert(console_users).values(name=name, created_at=utcnow(), **values))
        audit(
            conn,
            "cli",
            "user added" if not found else "user changed",
            {"user": name, "role": role.value},
        )
    return not found


def check_password(store: Store, name: str, password: str) -> Role | None:
    """The user's role when the password is right, else None (same work either way)."""
    with store.connect() as conn:
        row = conn.execute(
            select(console_users.c.role, console_users.c.password_hash).where(
                console_users.c.name == name
            )
        ).first()
    try:
        _HASHER.verify(row.password_hash if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return Role(row.role) if row else None


def is_user(conn: Connection, name: str) -> bool:
    """Whether a console user has this name (for the audit log of a refused sign-in)."""
    found = conn.execute(select(console_users.c.name).where(console_users.c.name == name))
    return found.first() is not None


def signing_key(store: Store) -> str:
    """The store's cookie-signing key, made on first use (a race between replicas: the
    first insert wins and everyone reads it back)."""
    with store.begin() as conn:
        value = _key(conn)
        if value is None:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(console_keys).values(
                            name=_SESSION_KEY, value=secrets.token_urlsafe(48), created_at=utcnow()
                        )
                    )
            except Exception:  # another replica made it a moment ago
                pass
            value = _key(conn)
    assert value is not None
    return value


def _key(conn: Connection) -> str | None:
    return conn.execute(
        select(console_keys.c.value).where(console_keys.c.name == _SESSION_KEY)
    ).scalar_one_or_none()


class Sessions:
    """Makes and reads the signed session cookie; `max_age_s` bounds a session's life."""

    def __init__(self, key: str, max_age_s: int) -> None:
        self._serializer = URLSafeTimedSerializer(
            key, salt="leadbridge.console.session", signer_kwargs={"digest_method": hashlib.sha256}
        )
        self.max_age_s = max_age_s

    def make(self, user: str, role: Role) -> tuple[Session, str]:
        session = Session(user, role, secrets.token_urlsafe(32))
        token = self._serializer.dumps({"u": user, "r": role.value, "c": session.csrf})
        return session, token

    def read(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data: Any = self._serializer.loads(cookie, max_age=self.max_age_s)
            return Session(str(data["u"]), Role(data["r"]), str(data["c"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None


def csrf_ok(session: Session, token: str | None) -> bool:
    """The form's token is this session's (constant-time compare)."""
    return token is not None and hmac.compare_digest(session.csrf.encode(), token.encode())


class LoginTokens:
    """The sign-in form's CSRF token and the signed cookie that carries it: same key as the
    sessions, another salt, so neither cookie passes for the other."""

    def __init__(self, key: str, max_age_s: int = LOGIN_FORM_S) -> None:
        self._serializer = URLSafeTimedSerializer(
            key, salt="leadbridge.console.login", signer_kwargs={"digest_method": hashlib.sha256}
        )
        self.max_age_s = max_age_s

    def make(self) -> tuple[str, str]:
        """A new token and its cookie value."""
        token = secrets.token_urlsafe(32)
        return token, self._serializer.dumps(token)

    def read(self, cookie: str | None) -> str | None:
        """The token a still-valid cookie carries, else None."""
        if not cookie:
            return None
        try:
            token: Any = self._serializer.loads(cookie, max_age=self.max_age_s)
        except BadSignature:
            return None
        return token if isinstance(token, str) and token else None

    def ok(self, cookie: str | None, form_token: str | None) -> bool:
        """The form's token is the one the cookie carries (constant-time compare)."""
        token = self.read(cookie)
        return (
            token is not None
            and form_token is not None
            and hmac.compare_digest(token.encode(), form_token.encode())
        )


def audit(conn: Connection, actor: str, action: str, detail: dict[str, Any]) -> None:
    """One line of the audit log: who did what, when (no personal data in `detail`)."""
    conn.execute(
        insert(console_audit).values(at=utcnow(), actor=actor, action=action, detail=detail)
    )


def audit_rows(conn: Connection, limit: int = 200) -> list[dict[str, Any]]:
    """The newest changes first."""
    stmt = select(console_audit).order_by(console_audit.c.id.desc()).limit(limit)
    return [
        {"at": _iso(r.at), "actor": r.actor, "action": r.action, "detail": r.detail}
        for r in conn.execute(stmt)
    ]


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")
