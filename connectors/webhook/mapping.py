"""The webhook's lead object: leadbridge's canonical fields under their own names."""

from __future__ import annotations

from leadbridge.core.mapping import FieldMap

FIELD_MAP = FieldMap(
    {
        name: name
        for name in (
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
            "first_seen",
            "last_seen",
        )
    }
)
