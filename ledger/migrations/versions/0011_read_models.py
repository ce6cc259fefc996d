"""Read models: billing history, deployment usage, the activity feed and hourly usage rollups.

Written only by their projectors (``projections/``); nothing is backfilled here: a projector
whose checkpoint is missing folds the log from position 0 when it first runs.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "proj_executions",
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False),
        _ts("occurred_at"),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("quantities", JSONB, nullable=False),
        sa.Column("cost_ucr", sa.BigInteger, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("duration_s", sa.BigInteger),
        sa.Column("machine_type", sa.Text),
        sa.Column("member", sa.Text),
        sa.Column("agent", sa.Text),
        sa.Column("flow", sa.Text),
        sa.Column("run", sa.Text),
        sa.Column("node", sa.Text),
        sa.Column("execution_id", sa.Text),
        sa.Column("deployment_id", sa.Text),
        sa.Column("hour_index", sa.BigInteger),
        sa.Column("reservation_id", UUID(as_uuid=True)),
        sa.Column("gated", sa.Boolean, nullable=False),
        sa.Column("debt_added_ucr", sa.BigInteger, nullable=False),
        sa.Column("rate_card_version", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "version", name="proj_executions_pkey"),
    )
    op.create_index("proj_executions_time_idx", "proj_executions", ["account_id", "occurred_at"])
    op.create_index("proj_executions_execution_idx", "proj_executions", ["account_id", "execution_id"],
                    postgresql_where=sa.text("execution_id IS NOT NULL"))
    op.create_table(
        "proj_deployment_usage",
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("deployment_id", sa.Text, nullable=False),
        sa.Column("instance_type", sa.Text, nullable=False),
        sa.Column("hours", sa.BigInteger, nullable=False),
        sa.Column("credits_ucr", sa.BigInteger, nullable=False),
        _ts("first_at"),
        _ts("last_at"),
        sa.PrimaryKeyConstraint("account_id", "deployment_id", name="proj_deployment_usage_pkey"),
    )
    op.create_table(
        "proj_activities",
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False),
        _ts("occurred_at"),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("amount_ucr", sa.BigInteger, nullable=False),
        sa.Column("balance_after_ucr", sa.BigInteger, nullable=False),
        sa.Column("execution_id", sa.Text),
        sa.Column("reservation_id", UUID(as_uuid=True)),
        sa.Column("detail", JSONB, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "version", name="proj_activities_pkey"),
    )
    op.create_index("proj_activities_kind_idx", "proj_activities", ["account_id", "kind", "version"])
    op.create_table(
        "proj_reservations",
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("reservation_id", UUID(as_uuid=True), nullable=False),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("held_ucr", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "reservation_id", name="proj_reservations_pkey"),
    )
    op.create_table(
        "proj_usage_hourly",
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("dim", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("operation", sa.Text, nullable=False),
        _ts("hour"),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("cost_ucr", sa.BigInteger, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "dim", "key", "operation", "hour", name="proj_usage_hourly_pkey"),
    )
    op.create_index("proj_usage_hourly_time_idx", "proj_usage_hourly", ["account_id", "dim", "hour"])


def downgrade() -> None:
    for table in ("proj_usage_hourly", "proj_reservations", "proj_activities", "proj_deployment_usage",
                  "proj_executions"):
        op.drop_table(table)
