"""drop the two leads indexes the console's composite indexes already cover (issue 21)

`ix_leads_stage_last_seen` and `ix_leads_offer_last_seen` (0009) start with `stage` and
`offer_key`: every lookup the single-column indexes served is served by them (a B-tree's
leading column), so keeping both only doubled the index writes of every lead upserted —
the ingest profile's largest store cost.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_leads_stage", table_name="leads")
    op.drop_index("ix_leads_offer_key", table_name="leads")


def downgrade() -> None:
    op.create_index("ix_leads_offer_key", "leads", ["offer_key"], unique=False)
    op.create_index("ix_leads_stage", "leads", ["stage"], unique=False)
