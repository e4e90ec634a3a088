"""The webhook's lead object: leadbridge's canonical fields under their own names.

The receiver owns what it does with them, so every field is written on every delivery.
`do_not_contact` is the marketplace DNC marker (a cross-listed partner was asked), not an
opt-out; `opted_out` is present, as true, only after an explicit withdrawal, and
`opted_out_of` then names the channels ("email;phone").
"""

from __future__ import annotations

from leadbridge.core.domain.mapping import FieldMap, FieldSpec, WritePolicy

NAMES = (
    "lead_key",
    "email",
    "first_name",
    "last_name",
    "phone",
    "country",
    "company",
    "title",
    "notes",
    "offer",
    "offer_id",
    "offer_title",
    "action",
    "actions",
    "channel",
    "stage",
    "score",
    "do_not_contact",
    "opted_out",
    "opted_out_of",
    "first_seen",
    "last_seen",
)

# Fit × engagement (docs/scoring.md), sent only when configured, under their own names.
SCORE_FIELDS: dict[str, str | FieldSpec] = {name: name for name in ("grade", "fit", "engagement")}

# A webhook receiver has no record leadbridge reads first: every field is written each time.
FIELD_MAP = FieldMap(
    {name: name for name in NAMES},
    policies={name: WritePolicy.ALWAYS for name in NAMES},
    consent=frozenset({"opted_out", "opted_out_of"}),
)
