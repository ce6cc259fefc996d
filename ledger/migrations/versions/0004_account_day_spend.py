"""Each account's spend per day: the run-out forecast reads these counters, not the usage events.

From this revision every debit also adds to the account's day counter (``ledger.state.spend_keys``);
this backfills the counters from the usage already in the log, exactly (a sum per UTC day of
``occurred_at``), so ``verify`` agrees with the inline state before and after.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Set to the exact sum, not added to: running it again, or after a writer of this version
    # already counted part of a day, still leaves each day's counter equal to its events.
    op.execute("""
        INSERT INTO spend_counters (account_id, scope, subject, period, spent_ucr)
        SELECT account_id, 'account', '', 'D' || to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
               sum((data ->> 'cost_ucr')::bigint)
        FROM events WHERE type = 'UsageMetered'
        GROUP BY 1, 4
        ON CONFLICT (account_id, scope, subject, period) DO UPDATE SET spent_ucr = excluded.spent_ucr
    """)


def downgrade() -> None:
    op.execute("DELETE FROM spend_counters WHERE scope = 'account' AND subject = '' AND period LIKE 'D%'")
