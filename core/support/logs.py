"""Logging: one JSON object per line (or text for people), never a secret or a raw email.

Redaction is a filter on the root handler, so a careless `log.info(f"... {email}")`
anywhere — ours or a library's — still comes out masked.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_EMAIL = re.compile(r"([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@([A-Za-z0-9.\-]+\.[A-Za-z]{2,})")
_SECRETS = re.compile(
    r"(?i)(\b(?:client_secret|secret|password|token|access_token|refresh_token|AccountKey|"
    r"sig|code|apikey|api_key|authorization)\b\s*[=:]\s*\"?)(?:Bearer\s+)?[^\s\";&,]+"
)
_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
_registered: list[str] = []


def mask_email(email: str | None) -> str:
    """`jsmith@contoso.com` → `j***@contoso.com`: enough to tell leads apart, not to contact."""
    if not email:
        return ""
    return _EMAIL.sub(r"\1***@\2", email)


def register_secret(value: str | None) -> None:
    """Make a configured secret value be redacted wherever it would appear in a log line."""
    if value and len(value) >= 6 and value not in _registered:
        _registered.append(value)


def redact(text: str) -> str:
    for secret in _registered:
        text = text.replace(secret, "****")
    text = _SECRETS.sub(r"\1****", text)
    return _EMAIL.sub(r"\1***@\2", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}"
            for k, v in vars(record).items()
            if k not in _STANDARD and not k.startswith("_")
        )
        line = f"{record.levelname.lower():7} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return f"{line} {extras}".rstrip()


def setup(fmt: str = "json", level: str = "INFO", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_leadbridge", False):
            root.removeHandler(old)
    handler._leadbridge = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # procrastinate logs two INFO lines per job; job_runs and `status` have that, and a job
    # that fails still logs at ERROR.
    for noisy in ("azure", "urllib3", "alembic", "waitress", "msal", "procrastinate", "apprise"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # "skipped: maximum number of running instances reached" is max_instances=1 working as
    # meant, not news for ops; APScheduler's errors (a job raised) still come through.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
