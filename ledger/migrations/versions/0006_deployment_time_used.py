"""A deployment keeps the time it paid for: ``used_us`` replaces ``segment_first_hour``.

Until this revision a resume charged a new hour at once, and hour n of a running segment was due
``n - segment_first_hour`` hours after it began. From now on pauses stop the clock: a deployment
is paid through ``hours_charged`` hours of running time, and hour n is due when the running time
used reaches n hours (``ledger.state.hour_due_at``). ``used_us`` is the running time used before
the current running segment (all of it while paused or stopped), in microseconds.

It is backfilled exactly as ``ledger.state.apply`` folds it from the log: the sum, over every
pause or stop of a running deployment, of the time since its start or last resume. So ``verify``
agrees with the inline state after the upgrade, and hours a resume charged early under the old
rule count as paid time the deployment still has.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("deployments", sa.Column("used_us", sa.BigInteger, nullable=False, server_default="0"))
    op.execute("""
        WITH life AS (
            SELECT account_id, data ->> 'deployment_id' AS deployment_id, type, occurred_at,
                   lag(type) OVER w AS prev_type, lag(occurred_at) OVER w AS prev_at
            FROM events
            WHERE type IN ('DeploymentStarted', 'DeploymentResumed', 'DeploymentPaused', 'DeploymentStopped')
            WINDOW w AS (PARTITION BY account_id, data ->> 'deployment_id' ORDER BY version)
        ), used AS (
            SELECT account_id, deployment_id,
                   sum((extract(epoch FROM greatest(occurred_at - prev_at, interval '0')) * 1000000)::bigint)
                       AS used_us
            FROM life
            WHERE type IN ('DeploymentPaused', 'DeploymentStopped')
              AND prev_type IN ('DeploymentStarted', 'DeploymentResumed')
            GROUP BY account_id, deployment_id
        )
        UPDATE deployments d SET used_us = used.used_us
        FROM used WHERE d.account_id = used.account_id AND d.deployment_id = used.deployment_id
    """)
    op.alter_column("deployments", "used_us", server_default=None)
    op.drop_column("deployments", "segment_first_hour")


def downgrade() -> None:
    # The old rule keeps no paid time: whole hours used become the segment's first hour, so a
    # running deployment's next hour falls due less than an hour later than it would now.
    op.add_column("deployments", sa.Column("segment_first_hour", sa.BigInteger, nullable=False,
                                           server_default="0"))
    op.execute("UPDATE deployments SET segment_first_hour = used_us / 3600000000")
    op.alter_column("deployments", "segment_first_hour", server_default=None)
    op.drop_column("deployments", "used_us")
