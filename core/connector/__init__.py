"""The connector contract core owns; every connector implements it and imports it from here.

    from leadbridge.core.connector import HttpTarget, TargetConfig, StageReader, RetryableError

- errors.py: what a connector raises (retryable, permanent, fatal; a malformed raw lead)
- config.py: the base of every connector's config (secrets from files)
- contract.py: Source and Target, the push Outcome, the capabilities a connector declares
- registry.py: the installed connectors (entry points), building one, parsing raw leads
- http_target.py: the HTTP target base (transport, field map, write policy, planning)
- transport.py: one HTTP policy for every outside system

Core never imports a connector: tests/test_boundary.py holds it to that.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Each name loads its module on first use (PEP 562): a module that needs only the errors
# or the config base — settings, status, the webhook — does not load the HTTP machinery.
_HOMES = {
    "Connector": "leadbridge.core.connector.contract",
    "ConnectorConfig": "leadbridge.core.connector.config",
    "ConnectorError": "leadbridge.core.connector.errors",
    "ConsentReader": "leadbridge.core.connector.contract",
    "ENTRY_POINT_GROUP": "leadbridge.core.connector.registry",
    "Eraser": "leadbridge.core.connector.contract",
    "ErasureRecord": "leadbridge.core.domain.models",
    "ErasureResult": "leadbridge.core.domain.models",
    "FatalError": "leadbridge.core.connector.errors",
    "Countable": "leadbridge.core.connector.contract",
    "HttpTarget": "leadbridge.core.connector.http_target",
    "InteractiveSignIn": "leadbridge.core.connector.contract",
    "Link": "leadbridge.core.connector.http_target",
    "MalformedLead": "leadbridge.core.connector.errors",
    "Outcome": "leadbridge.core.domain.models",
    "PayloadParser": "leadbridge.core.connector.contract",
    "PermanentError": "leadbridge.core.connector.errors",
    "PushReceiver": "leadbridge.core.connector.contract",
    "RecordLinks": "leadbridge.core.connector.contract",
    "RetryableError": "leadbridge.core.connector.errors",
    "SandboxRecord": "leadbridge.core.connector.contract",
    "SandboxServer": "leadbridge.core.connector.contract",
    "Sandboxed": "leadbridge.core.connector.contract",
    "SchemaChecker": "leadbridge.core.connector.contract",
    "SchemaProblem": "leadbridge.core.connector.contract",
    "Source": "leadbridge.core.connector.contract",
    "StageReader": "leadbridge.core.connector.contract",
    "StateReporter": "leadbridge.core.connector.contract",
    "Target": "leadbridge.core.connector.contract",
    "TargetConfig": "leadbridge.core.connector.http_target",
    "Transport": "leadbridge.core.connector.transport",
    "Write": "leadbridge.core.connector.http_target",
    "WritesBack": "leadbridge.core.connector.contract",
    "build": "leadbridge.core.connector.registry",
    "connector_class": "leadbridge.core.connector.registry",
    "connector_kinds": "leadbridge.core.connector.registry",
    "kinds_of": "leadbridge.core.connector.registry",
    "parse_raw": "leadbridge.core.connector.registry",
    "response_body": "leadbridge.core.connector.transport",
    "sandboxed_kinds": "leadbridge.core.connector.registry",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


if TYPE_CHECKING:
    from leadbridge.core.connector.config import ConnectorConfig
    from leadbridge.core.connector.contract import (
        Connector,
        ConsentReader,
        Countable,
        Eraser,
        InteractiveSignIn,
        PayloadParser,
        PushReceiver,
        RecordLinks,
        Sandboxed,
        SandboxRecord,
        SandboxServer,
        SchemaChecker,
        SchemaProblem,
        Source,
        StageReader,
        StateReporter,
        Target,
        WritesBack,
    )
    from leadbridge.core.connector.errors import (
        ConnectorError,
        FatalError,
        MalformedLead,
        PermanentError,
        RetryableError,
    )
    from leadbridge.core.connector.http_target import HttpTarget, Link, TargetConfig, Write
    from leadbridge.core.connector.registry import (
        ENTRY_POINT_GROUP,
        build,
        connector_class,
        connector_kinds,
        kinds_of,
        parse_raw,
        sandboxed_kinds,
    )
    from leadbridge.core.connector.transport import Transport, response_body
    from leadbridge.core.domain.models import ErasureRecord, ErasureResult, Outcome

__all__ = [
    "ENTRY_POINT_GROUP",
    "Connector",
    "ConnectorConfig",
    "ConnectorError",
    "ConsentReader",
    "Countable",
    "Eraser",
    "ErasureRecord",
    "ErasureResult",
    "FatalError",
    "HttpTarget",
    "InteractiveSignIn",
    "Link",
    "MalformedLead",
    "Outcome",
    "PayloadParser",
    "PermanentError",
    "PushReceiver",
    "RecordLinks",
    "RetryableError",
    "SandboxRecord",
    "SandboxServer",
    "Sandboxed",
    "SchemaChecker",
    "SchemaProblem",
    "Source",
    "StageReader",
    "StateReporter",
    "Target",
    "TargetConfig",
    "Transport",
    "Write",
    "WritesBack",
    "build",
    "connector_class",
    "connector_kinds",
    "kinds_of",
    "parse_raw",
    "response_body",
    "sandboxed_kinds",
]
