"""The installed connectors, found through the `leadbridge.connectors` entry-point group.

A connector registers one class per kind (`salesforce = "…:SalesforceTarget"`); core finds
everything else from what the class declares: its Config, its role, its capabilities
(core/connector/contract.py). Nothing here names a connector.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

from leadbridge.core.connector.config import ConnectorConfig
from leadbridge.core.connector.contract import Connector, PayloadParser, Sandboxed
from leadbridge.core.domain.models import MarketplaceLead, RawLead

ENTRY_POINT_GROUP = "leadbridge.connectors"


@cache
def connector_kinds() -> dict[str, Any]:
    """Every installed connector's entry point by `kind` (not yet imported)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def connector_class(kind: str) -> type[Connector]:
    kinds = connector_kinds()
    if kind not in kinds:
        raise KeyError(kind)
    return kinds[kind].load()  # type: ignore[no-any-return]


def kinds_of(role: str) -> list[str]:
    """The installed kinds of one role ("source" or "target"), sorted; internal kinds (a
    class with `listed = False`, e.g. a write-back synthesised from a source) left out."""
    return sorted(
        kind
        for kind in connector_kinds()
        if getattr(connector_class(kind), "role", None) == role
        and getattr(connector_class(kind), "listed", True)
    )


def build(config: ConnectorConfig, **options: Any) -> Any:
    """Instantiate the connector a validated config names (targets take `placeholder`)."""
    cls = connector_class(config.kind)
    return cls.from_config(config, **options) if cls.role == "target" else cls.from_config(config)


_PARSERS: dict[str, type[PayloadParser]] = {}


def _parser_for(payload_kind: str, prefer: str | None) -> type[PayloadParser] | None:
    """The class that parses raw leads of `payload_kind`, loading as few connectors as it can.

    Importing every installed connector costs about half a second (the CRM targets pull in
    their SDKs), which a run that only reads a leads file should not pay: the connector kind
    that landed the raw lead (`prefer`) is tried first, and the full scan, in sorted kind
    order, is the fallback for a raw lead whose source is no longer configured.
    """
    found = _PARSERS.get(payload_kind)
    if found is not None:
        return found
    for kind in ([prefer] if prefer in connector_kinds() else []) + sorted(connector_kinds()):
        cls = connector_class(kind)
        if not (isinstance(cls, type) and issubclass(cls, PayloadParser)):
            continue
        if payload_kind in cls.payload_kinds:
            _PARSERS[payload_kind] = cls
            return cls
    return None


def parse_raw(raw: RawLead, prefer: str | None = None) -> MarketplaceLead:
    """Parse a landed raw lead with the parser its source declared for its shape.

    `prefer` names the connector kind that landed it, when known: see `_parser_for`."""
    parser = _parser_for(raw.kind, prefer)
    if parser is None:
        raise ValueError(f"no installed connector parses raw leads of kind {raw.kind!r}")
    return parser.parse_payload(raw.kind, raw.payload, raw.occurred_at)


def sandboxed_kinds() -> dict[str, type[Sandboxed]]:
    """Every installed target kind with a sandbox, by kind."""
    found: dict[str, type[Sandboxed]] = {}
    for kind in kinds_of("target"):
        cls = connector_class(kind)
        if isinstance(cls, type) and issubclass(cls, Sandboxed):
            found[kind] = cls
    return found
