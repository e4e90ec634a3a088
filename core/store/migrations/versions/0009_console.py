"""the operator console: users, sessions, the audit log (issue 19)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import leadbridge.core.store.tables

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UTC = leadbridge.core.store.tables.UtcDateTime(timezone=True)
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "console_keys",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "console_audit",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_console_audit_at", "console_audit", ["at"], unique=False)
    op.create_index("ix_leads_stage_last_seen", "leads", ["stage", "last_seen"], unique=False)
    op.create_index("ix_leads_offer_last_seen", "leads", ["offer_key", "last_seen"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_leads_offer_last_seen", table_name="leads")
    op.drop_index("ix_leads_stage_last_seen", table_name="leads")
    op.drop_index("ix_console_audit_at", table_name="console_audit")
    op.drop_table("console_audit")
    op.drop_table("console_keys")
    op.drop_table("console_users")
