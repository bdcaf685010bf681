"""Accounts own random conversation ids; conversations; idempotent turns.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Existing accounts keep the data they already have: their ``user_id`` becomes
their username. New accounts get a random one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("user_id", sa.String(length=150), nullable=True))
    op.execute("UPDATE accounts SET user_id = username")
    with op.batch_alter_table("accounts") as batch:
        batch.alter_column("user_id", existing_type=sa.String(length=150), nullable=False)
    op.create_index("ix_accounts_user_id", "accounts", ["user_id"], unique=True)
    op.add_column("accounts", sa.Column("created_by", sa.String(length=150), nullable=True))

    op.add_column("api_keys", sa.Column("account_user_id", sa.String(length=150), nullable=True))
    op.execute(
        "UPDATE api_keys SET account_user_id = "
        "(SELECT accounts.user_id FROM accounts WHERE accounts.username = api_keys.username)"
    )

    op.create_table(
        "conversations",
        sa.Column(
            "user_id",
            sa.String(length=150),
            sa.ForeignKey("users.id"),
            primary_key=True,
        ),
        sa.Column("session_id", sa.String(length=150), primary_key=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )

    # Conversations held before this revision get a row each, titled by their
    # first message, so the console lists them.
    op.execute(
        "INSERT INTO conversations (user_id, session_id, title, created_at, updated_at) "
        "SELECT t.user_id, t.session_id, "
        "substr((SELECT f.message FROM turns f WHERE f.user_id = t.user_id "
        "AND f.session_id = t.session_id ORDER BY f.id LIMIT 1), 1, 60), "
        "min(t.created_at), max(t.created_at) "
        "FROM turns t GROUP BY t.user_id, t.session_id"
    )

    op.add_column("turns", sa.Column("idempotency_key", sa.String(length=200), nullable=True))
    op.create_index(
        "ix_turns_user_idempotency", "turns", ["user_id", "idempotency_key"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ix_turns_user_idempotency", table_name="turns")
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("idempotency_key")
    op.drop_table("conversations")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("account_user_id")
    op.drop_index("ix_accounts_user_id", table_name="accounts")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("created_by")
        batch.drop_column("user_id")
