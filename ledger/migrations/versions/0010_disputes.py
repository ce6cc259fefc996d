"""Disputes of purchases: one row per disputed purchase, its frozen and restored credits.

``ledger.state.Purchase.dispute`` as the writer keeps it beside the log (``PurchaseDisputed``,
``DisputeClosed``); ``verify`` compares it with the fold. No event before this revision
disputes anything, so there is nothing to backfill.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "disputes",
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("purchase_id", UUID(as_uuid=True), nullable=False),
        sa.Column("dispute_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("frozen_ucr", sa.BigInteger, nullable=False),
        sa.Column("restored_ucr", sa.BigInteger, nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("account_id", "purchase_id", name="disputes_pkey"),
        sa.CheckConstraint("status IN ('open', 'won', 'lost')", name="disputes_status_check"),
    )


def downgrade() -> None:
    op.drop_table("disputes")
