"""target_links.created_at: when leadbridge created the CRM record (erasure deletes only
what leadbridge created)

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import leadbridge.core.store.tables

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "target_links",
        sa.Column(
            "created_at", leadbridge.core.store.tables.UtcDateTime(timezone=True), nullable=True
        ),
    )


def downgrade() -> None:
    with op.batch_alter_table("target_links") as batch:
        batch.drop_column("created_at")
