"""API keys: hashed secrets with a visible prefix, a role, and an optional account.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("account_id", sa.Text),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("prefix", sa.Text, nullable=False),
        sa.Column("secret_sha256", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("key_id", name="api_keys_pkey"),
        sa.CheckConstraint("role IN ('operator', 'admin', 'member', 'read')", name="api_keys_role_check"),
        sa.CheckConstraint("(role = 'operator') = (account_id IS NULL)", name="api_keys_scope_check"),
    )
    op.create_index("api_keys_account_idx", "api_keys", ["account_id"])


def downgrade() -> None:
    op.drop_table("api_keys")
