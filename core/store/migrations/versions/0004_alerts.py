"""the alert outbox and channel state (issue 18)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import leadbridge.core.store.tables

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Utc = leadbridge.core.store.tables.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("event", sa.String(length=30), nullable=False),
        sa.Column("dedupe_key", sa.String(length=300), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", Utc(timezone=True), nullable=False),
        sa.Column("next_attempt_at", Utc(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("claimed_until", Utc(timezone=True), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("sent_at", Utc(timezone=True), nullable=True),
        sa.Column("grouped", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("dedupe_key", "channel", name="uq_alerts_dedupe_channel"),
    )
    op.create_index(
        "ix_alerts_channel_due", "alerts", ["channel", "state", "next_attempt_at"], unique=False
    )
    op.create_table(
        "alert_channels",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("last_success_at", Utc(timezone=True), nullable=True),
        sa.Column("last_failure_at", Utc(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("retry_at", Utc(timezone=True), nullable=True),
        sa.Column("window_start", Utc(timezone=True), nullable=True),
        sa.Column("window_sent", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_alert_channels")),
    )


def downgrade() -> None:
    op.drop_table("alert_channels")
    op.drop_index("ix_alerts_channel_due", table_name="alerts")
    op.drop_table("alerts")
