"""contacts, accounts and their CRM links (issue 16)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import leadbridge.core.store.tables

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """record_links: the contact and account each lead hangs off, per CRM."""
    op.create_table(
        "record_links",
        sa.Column("lead_key", sa.String(32), nullable=False),
        sa.Column("target", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=False),
        sa.Column(
            "linked_at", leadbridge.core.store.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "created_at", leadbridge.core.store.tables.UtcDateTime(timezone=True), nullable=True
        ),
        sa.PrimaryKeyConstraint("lead_key", "target", "kind"),
    )


def downgrade() -> None:
    op.drop_table("record_links")
