"""The built-in field maps as docs/mapping.md shows them (a test keeps the doc in step)."""

from __future__ import annotations

import json

from leadbridge.core.connector import HttpTarget, connector_class, kinds_of
from leadbridge.core.domain.mapping import FieldMap, WritePolicy


def built_in() -> dict[str, FieldMap]:
    """Every installed target's built-in map, by kind (found through the registry, so a new
    connector's map appears in the docs test without a line here)."""
    maps = {}
    for kind in kinds_of("target"):
        cls = connector_class(kind)
        if isinstance(cls, type) and issubclass(cls, HttpTarget) and cls.field_map.fields:
            maps[kind] = cls.field_map
    return maps


def table(kind: str) -> str:
    """The built-in map as docs/mapping.md shows it, with each field's write policy."""
    return table_of(built_in()[kind])


def table_of(fmap: FieldMap) -> str:
    """Any field map as docs/mapping.md shows it (a connector's second map, e.g. contacts)."""
    rows = [
        "| CRM field | from | on an existing record | required | max length |",
        "|---|---|---|---|---:|",
    ]
    for name, source in fmap.describe().items():
        shown = source if isinstance(source, str) else json.dumps(source)
        rows.append(
            f"| `{name}` | `{shown}` | {_policy(fmap, name)} | "
            f"{'yes (placeholder on create)' if name in fmap.required else ''} | "
            f"{fmap.lengths.get(name, '')} |"
        )
    return "\n".join(rows)


def _policy(fmap: FieldMap, name: str) -> str:
    if name in fmap.consent:
        return "opt-out: only ever sent as true"
    return {
        WritePolicy.ALWAYS: "always",
        WritePolicy.IF_EMPTY: "if empty",
        WritePolicy.ON_CREATE: "never (create only)",
        WritePolicy.NEVER: "never",
    }[fmap.policy(name)]
