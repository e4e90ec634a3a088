"""raw_leads.redacted_at: when retention replaced a landed payload's personal data (issue 17)

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import leadbridge.core.store.tables

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "raw_leads",
        sa.Column(
            "redacted_at", leadbridge.core.store.tables.UtcDateTime(timezone=True), nullable=True
        ),
    )
    op.create_index("ix_raw_leads_received_at", "raw_leads", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_raw_leads_received_at", table_name="raw_leads")
    with op.batch_alter_table("raw_leads") as batch:
        batch.drop_column("redacted_at")
