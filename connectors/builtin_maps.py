"""Every target's built-in field map in one place; docs/mapping.md's tables come from here."""

from __future__ import annotations

import json

from leadbridge.connectors.dataverse.mapping import FIELD_MAP as DATAVERSE
from leadbridge.connectors.hubspot.mapping import FIELD_MAP as HUBSPOT
from leadbridge.connectors.salesforce.mapping import FIELD_MAP as SALESFORCE
from leadbridge.connectors.webhook.mapping import FIELD_MAP as WEBHOOK
from leadbridge.core.mapping import FieldMap, WritePolicy

BUILT_IN: dict[str, FieldMap] = {
    "salesforce": SALESFORCE,
    "hubspot": HUBSPOT,
    "dataverse": DATAVERSE,
    "webhook": WEBHOOK,
}


def table(kind: str) -> str:
    """The built-in map as docs/mapping.md shows it, with each field's write policy."""
    fmap = BUILT_IN[kind]
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
