"""Turn ratings: a thumbs up (1) or down (-1) on a reply, and when it was given.

Revision ID: 0004
Revises: 0003
Create Date: 2027-01-10

Both columns are nullable: every turn stored before this revision is unrated.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("turns", sa.Column("rating", sa.Integer(), nullable=True))
    op.add_column("turns", sa.Column("rated_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("rated_at")
        batch.drop_column("rating")
