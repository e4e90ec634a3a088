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

from leadbridge.core.connector.config import ConnectorConfig
from leadbridge.core.connector.contract import (
    Connector,
    ConsentReader,
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
from leadbridge.core.domain.models import Outcome

__all__ = [
    "ENTRY_POINT_GROUP",
    "Connector",
    "ConnectorConfig",
    "ConnectorError",
    "ConsentReader",
    "Eraser",
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
