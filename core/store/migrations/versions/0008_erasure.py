"""the suppression list and the erasures asked for (issue 17)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import leadbridge.core.store.tables

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UTC = leadbridge.core.store.tables.UtcDateTime(timezone=True)
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("person_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("person_hash"),
    )
    op.create_table(
        "erasures",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("person_hash", sa.String(length=64), nullable=False),
        sa.Column("requested_at", UTC, nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("removed", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_erasures_person_hash", "erasures", ["person_hash"])
    op.create_index("ix_erasures_open", "erasures", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_erasures_open", table_name="erasures")
    op.drop_index("ix_erasures_person_hash", table_name="erasures")
    op.drop_table("erasures")
    op.drop_table("suppressions")
