"""Webhook deliveries are scheduled in PostgreSQL, not only in the broker.

Each delivery row knows when its next attempt is due (``next_attempt_at``, NULL once it is
final) and whether it is in flight (``lease_until``: queued or being sent until then), so the
scheduler's sweep sends again whatever is due and not in flight after the broker lost its
messages (``workers/webhooks.py``). ``created_at`` bounds a delivery's age.

Rows an earlier version left ``failed`` (their retries lived only in the broker) become due at
once: the sweep resumes them, up to the maximum attempts and age.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("webhook_deliveries", sa.Column("next_attempt_at", sa.DateTime(timezone=True)))
    op.add_column("webhook_deliveries", sa.Column("lease_until", sa.DateTime(timezone=True)))
    op.add_column("webhook_deliveries", sa.Column("created_at", sa.DateTime(timezone=True)))
    op.execute("UPDATE webhook_deliveries SET created_at = updated_at,"
               " next_attempt_at = CASE WHEN status IN ('pending', 'failed') THEN updated_at END")
    op.alter_column("webhook_deliveries", "created_at", nullable=False)
    op.create_index("webhook_deliveries_due_idx", "webhook_deliveries", ["next_attempt_at"],
                    postgresql_where=sa.text("next_attempt_at IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("webhook_deliveries_due_idx", table_name="webhook_deliveries")
    op.drop_column("webhook_deliveries", "created_at")
    op.drop_column("webhook_deliveries", "lease_until")
    op.drop_column("webhook_deliveries", "next_attempt_at")
