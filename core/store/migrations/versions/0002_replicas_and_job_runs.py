"""replicas and job runs: what each `leadbridge run` process is doing, for status and
cluster mode

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import leadbridge.core.store.tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Utc = leadbridge.core.store.tables.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("engine", sa.String(length=20), nullable=False),
        sa.Column("started_at", Utc(timezone=True), nullable=False),
        sa.Column("heartbeat_at", Utc(timezone=True), nullable=False),
        sa.Column("stopped_at", Utc(timezone=True), nullable=True),
        sa.Column("doing", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_replicas")),
    )
    op.create_table(
        "job_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("job", sa.String(length=200), nullable=False),
        sa.Column("replica", sa.String(length=200), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("period", sa.BigInteger(), nullable=True),
        sa.Column("started_at", Utc(timezone=True), nullable=False),
        sa.Column("finished_at", Utc(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
    )
    op.create_index("ix_job_runs_job_started", "job_runs", ["job", "started_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_job_runs_job_started", table_name="job_runs")
    op.drop_table("job_runs")
    op.drop_table("replicas")
