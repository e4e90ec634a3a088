"""fit × engagement scores (issue 24): the lead's grid cell, to select leads by grade

The grade, the numbers behind it and the actions' times live in the lead's JSON (`data`);
the column is the cell alone, indexed for `leads list --grade`, the funnel by grade and the
daily rescore. Leads stored before have none until they are scored again.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("leads", sa.Column("grade", sa.String(2), nullable=True))
    op.create_index("ix_leads_grade", "leads", ["grade"])


def downgrade() -> None:
    op.drop_index("ix_leads_grade", table_name="leads")
    with op.batch_alter_table("leads") as batch:
        batch.drop_column("grade")
