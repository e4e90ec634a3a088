"""The error classes every connector raises and core acts on (the singer-sdk split).

`RetryableError` — the same request may pass later (429, 5xx, connection errors, row locks;
maybe with the vendor's wait). `PermanentError` — this record will never pass as it is
(validation, picklist, too long): it is skipped to a dead letter with the vendor's answer.
`FatalError` — configuration or credentials: the target stops, everything stays queued.
`MalformedLead` is the source-side twin of `PermanentError`: the raw lead stays in landing,
quarantined with the field and the fix.
"""

from __future__ import annotations

from typing import Any


class ConnectorError(Exception):
    """Base of the three delivery error classes."""


class RetryableError(ConnectorError):
    """429, 5xx, connection errors, row locks: the same request may pass later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ConnectorError):
    """The record will never pass as it is (validation, picklist, too long)."""

    def __init__(self, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.body = body


class FatalError(ConnectorError):
    """Configuration or credentials are wrong: nothing will pass until an operator acts."""


class MalformedLead(ValueError):
    """A raw lead that can't be read. Names the field and what would fix it."""

    def __init__(self, field: str, reason: str, fix: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.fix = fix
