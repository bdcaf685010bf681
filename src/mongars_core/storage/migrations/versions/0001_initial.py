"""Initial schema: users, turns, memories, plugin state.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=150), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "turns",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("turn_id", sa.String(length=64), nullable=False, unique=True),
        sa.Column("user_id", sa.String(length=150), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("session_id", sa.String(length=150), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("backend", sa.String(length=100), nullable=False),
        sa.Column("meta", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_turns_user_id", "turns", ["user_id"])
    op.create_index("ix_turns_user_session", "turns", ["user_id", "session_id", "id"])
    op.create_table(
        "memories",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.String(length=150), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("session_id", sa.String(length=150), nullable=False),
        sa.Column("turn_id", sa.String(length=64), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("embedder", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_memories_user_id_id", "memories", ["user_id", "id"])
    op.create_index("ix_memories_expires_at", "memories", ["expires_at"])
    op.create_table(
        "plugin_state",
        sa.Column("namespace", sa.String(length=100), primary_key=True),
        sa.Column("user_id", sa.String(length=150), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("plugin_state")
    op.drop_index("ix_memories_expires_at", table_name="memories")
    op.drop_index("ix_memories_user_id_id", table_name="memories")
    op.drop_table("memories")
    op.drop_index("ix_turns_user_session", table_name="turns")
    op.drop_index("ix_turns_user_id", table_name="turns")
    op.drop_table("turns")
    op.drop_table("users")
