"""What every connector is: the Source and Target protocols, the error classes, the registry.

Errors follow the singer-sdk split: `RetryableError` (try again later, maybe after a hint),
`PermanentError` (this record will never pass as it is: dead-letter it), `FatalError`
(configuration or credentials: stop the target, keep everything queued). `MalformedLead`
is the source-side twin of `PermanentError`: the raw lead stays in landing, quarantined.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, model_validator

from leadbridge.core.models import Lead, MarketplaceLead, PushResult, RawLead, StageChange

ENTRY_POINT_GROUP = "leadbridge.connectors"


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


class ConnectorConfig(BaseModel):
    """Base of every connector's config. Unknown keys are errors, so typos are caught.

    Any secret may instead be read from a file: `client_secret_file: /run/secrets/sf`
    fills `client_secret` (the Docker / Kubernetes secrets convention).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: str

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in [k for k in data if isinstance(k, str) and k.endswith("_file")]:
            field = key.removesuffix("_file")
            if field not in cls.model_fields or key in cls.model_fields:
                continue
            path = Path(str(data.pop(key)))
            try:
                data[field] = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(
                    f"{key}: cannot read {path} ({exc.strerror}); "
                    f"mount the secret there or set {field} directly"
                ) from exc
        return data


@runtime_checkable
class Source(Protocol):
    """Where raw leads come from. `fetch` yields each raw lead with the cursor safe after it."""

    name: str

    def fetch(self, cursor: str | None) -> Iterator[tuple[RawLead, str]]: ...


@runtime_checkable
class Target(Protocol):
    """A system leads are written to and, optionally, stages read back from."""

    name: str
    max_batch: int

    def upsert(self, leads: Sequence[Lead]) -> list[PushResult]: ...

    def stage_changes(self, since: str | None) -> tuple[list[StageChange], str]: ...


class Connector(Protocol):
    """What an entry point in `leadbridge.connectors` names: a class with its Config."""

    Config: ClassVar[type[ConnectorConfig]]
    role: ClassVar[str]  # "source" | "target"

    @classmethod
    def from_config(cls, config: Any) -> Any: ...


@cache
def connector_kinds() -> dict[str, Any]:
    """Every installed connector by `kind`, loaded from the entry-point group."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def connector_class(kind: str) -> type[Connector]:
    kinds = connector_kinds()
    if kind not in kinds:
        raise KeyError(kind)
    return kinds[kind].load()


def parse_raw(raw: RawLead) -> MarketplaceLead:
    """Parse a landed raw lead with the parser for its payload shape."""
    from leadbridge.connectors.marketplace import parse_payload

    return parse_payload(raw.kind, raw.payload, raw.occurred_at)


def build(config: ConnectorConfig, **options: Any) -> Any:
    """Instantiate the connector a validated config names (targets take `placeholder`)."""
    cls = connector_class(config.kind)
    return cls.from_config(config, **options) if cls.role == "target" else cls.from_config(config)
