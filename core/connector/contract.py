"""What a connector is to core: the Source and Target contracts, the outcome of a push, and
the optional abilities a connector declares by implementing them.

Core asks "can this target read stages back?" with `isinstance(target, StageReader)`, never
by looking for a method, and never by its vendor: a capability is a small ABC the connector
class inherits and implements (dlt's `WithStateSync` pattern). A new ability is a new ABC
here, implemented where it exists.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from leadbridge.core.connector.config import ConnectorConfig
from leadbridge.core.domain.models import (
    ErasureRecord,
    ErasureResult,
    Lead,
    MarketplaceLead,
    PushResult,
    RawLead,
    StageChange,
)

if TYPE_CHECKING:
    from leadbridge.core.connector.errors import MalformedLead


@runtime_checkable
class Source(Protocol):
    """Where raw leads come from. `fetch` yields each raw lead with the cursor safe after it:
    a cursor is stored only with everything up to it landed."""

    name: str

    def fetch(self, cursor: str | None) -> Iterator[tuple[RawLead, str]]: ...


@runtime_checkable
class Target(Protocol):
    """A system leads are written to. `links` is what leadbridge knows of each lead there
    (external id, pushed stage, state); one result per lead, in order."""

    name: str
    max_batch: int

    def upsert(
        self, leads: Sequence[Lead], links: Mapping[str, Any] | None = None
    ) -> list[PushResult]: ...


class Connector(Protocol):
    """What an entry point in `leadbridge.connectors` names: a class with its Config."""

    Config: ClassVar[type[ConnectorConfig]]
    role: ClassVar[str]  # "source" | "target"

    @classmethod
    def from_config(cls, config: Any) -> Any: ...


# --- capabilities ----------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaProblem:
    """Something in the CRM's own schema that will make pushes fail or lose data."""

    key: str  # the config key it concerns, e.g. targets[sales].fields.Title
    message: str
    fix: str


class StageReader(ABC):
    """A target whose records' stages can be read back (stage sync)."""

    @abstractmethod
    def stage_changes(self, since: str | None) -> tuple[list[StageChange], str]:
        """Stages changed since the watermark, and the new watermark."""


class SchemaChecker(ABC):
    """A target that can check the CRM's own schema against its config
    (`config check --online`); `schema_notes` are what the check learnt or did that is no
    problem ("country picklists are on", "created the property x")."""

    @property
    def schema_notes(self) -> list[str]:
        notes: list[str] = self.__dict__.setdefault("_schema_notes", [])
        return notes

    @abstractmethod
    def schema_problems(self, create_missing: bool = False) -> list[SchemaProblem]: ...


class StateReporter(ABC):
    """A target with facts of its own for `status` and /metrics, e.g. API allocation used:
    {"api_usage": {"used": 18, "total": 15000}}."""

    @abstractmethod
    def state(self) -> dict[str, Any]: ...


class RecordLinks(ABC):
    """A target that can say where a record lives in its UI (alerts, the console)."""

    @abstractmethod
    def record_url(self, external_id: str) -> str | None: ...


class Eraser(ABC):
    """A target that can delete what leadbridge created for a person (right to erasure).

    Core asks only for records the CRM said it created for leadbridge; `erase` answers one
    result per record, in order. A record already gone is ok; a refusal that may pass later
    (throttled, down) is RETRYABLE and asked again; credentials or configuration refused
    raise FatalError as for delivery."""

    @abstractmethod
    def erase(self, records: Sequence[ErasureRecord]) -> list[ErasureResult]: ...


class ConsentReader(ABC):
    """A target whose opt-outs can be read back (consent flows one way, to true).

    `opt_outs(since)` answers the records found opted out since the watermark `since`
    (None: from the start), as OptOut-shaped mappings (core/domain/models.py) — whose they
    are by `lead_key` or, for a person-level record, by its `external_id` — and the next
    watermark. Core records each on the person and fans it out to every target."""

    @abstractmethod
    def opt_outs(self, since: str | None) -> tuple[list[Mapping[str, Any]], str]: ...


class PushReceiver(ABC):
    """A source the daemon's HTTP endpoint feeds (POST /marketplace/leads/<token>): it says
    whose token a request carries, makes any body a raw lead to land, and says after landing
    what is wrong with it, for the sender's answer."""

    name: str  # a PushReceiver is a Source: its name is the one in the configuration

    @abstractmethod
    def token_matches(self, candidate: str) -> bool: ...

    @abstractmethod
    def raw_lead(self, body: bytes, received_at: datetime) -> RawLead: ...

    @abstractmethod
    def problem(self, raw: RawLead) -> MalformedLead | None: ...


class Countable(ABC):
    """A source that can say, cheaply and in bounded memory, about how many records a
    fetch from `cursor` will yield: what a long run's progress bar and ETA are out of.
    An estimate (a CSV row may span lines); None when it can't tell."""

    @abstractmethod
    def expected_records(self, cursor: str | None) -> int | None: ...


class PayloadParser(ABC):
    """A source whose landed raw leads core parses when it processes them: it declares the
    raw kinds it makes (`RawLead.kind`) and parses them."""

    payload_kinds: ClassVar[frozenset[str]]

    @classmethod
    @abstractmethod
    def parse_payload(
        cls, kind: str, payload: Any, occurred_at: datetime | None
    ) -> MarketplaceLead: ...


class InteractiveSignIn(ABC):
    """A source that needs a person to sign in once (delegated permissions): `sign_in`
    shows `say` what to do, waits, and returns who signed in."""

    @abstractmethod
    def sign_in(self, say: Callable[[str], None]) -> str: ...


class WritesBack(ABC):
    """A source that also takes stages back (a CRM-like source): it names the target kind
    core adds for it, sharing the source's config."""

    @classmethod
    @abstractmethod
    def write_back_kind(cls, config: ConnectorConfig) -> str | None:
        """The kind of the target to add for this source, or None when it writes nothing."""


@runtime_checkable
class SandboxServer(Protocol):
    """A running local stand-in of a vendor's API (demo, `leadbridge sandbox`, tests)."""

    url: str
    records: dict[str, dict[str, Any]]

    def start(self) -> SandboxServer: ...

    def stop(self) -> None: ...

    def api_calls(self) -> int: ...

    def fault_statuses(self) -> frozenset[int]:
        """The error statuses it can be told to answer (its vendor's own bodies)."""
        ...

    def set_faults(self, statuses: Mapping[int, float]) -> None:
        """Answer these shares of API requests with these statuses."""
        ...


@dataclass(frozen=True)
class SandboxRecord:
    """One record of a sandbox as the demo shows it."""

    name: str
    email: str
    stage: str  # as the CRM holds it, readable: "salesqualifiedlead", "sql (100000003)"


class Sandboxed(ABC):
    """A target that has a sandbox. `default_name` is the target's name in the demo."""

    default_name: ClassVar[str]

    @classmethod
    @abstractmethod
    def sandbox(cls, *, port: int = 0, latency_ms: float = 0.0) -> SandboxServer:
        """A sandbox of this vendor, not started."""

    @classmethod
    @abstractmethod
    def sandbox_entry(cls, sandbox: Any, name: str) -> dict[str, Any]:
        """The `targets:` entry that points leadbridge at a running sandbox."""

    @classmethod
    @abstractmethod
    def sandbox_records(cls, sandbox: Any, config: Any) -> list[SandboxRecord]:
        """What the sandbox holds, for a person to read."""

    @classmethod
    def sandbox_people(cls, sandbox: Any, config: Any) -> list[str]:
        """What the sandbox says about people and companies, for a person to read: how the
        leads hang off contacts and accounts ("the 2 leads of a…@contoso.com hang off one
        contact and one account"). None by default: a CRM of loose leads has nothing to say."""
        return []

    @classmethod
    def move_stage(cls, sandbox: Any, config: Any, lead_key: str, stage: str) -> bool:
        """Do what a salesperson does in this CRM to put the lead at `stage`; False when
        the sandbox can't (the demo then skips its stage-sync step)."""
        return False
