"""Initial schema: the event log, inline account state, catalogues, the append-only guard.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Tables are spelled out here rather than created from ``ledger.schema.metadata`` so that this
migration stays what it was when later ones change the schema; ``tests/ledger/test_schema.py``
checks that head still matches the metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.types import UserDefinedType

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


class _Xid8(UserDefinedType[Any]):
    # A private copy of ledger.schema.Xid8, so this file never changes under a later edit.
    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.execute("CREATE SEQUENCE events_position_seq AS bigint")

    op.create_table(
        "events",
        sa.Column(
            "position",
            sa.BigInteger,
            server_default=sa.text("nextval('events_position_seq')"),
            nullable=False,
        ),
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("schema_version", sa.SmallInteger, nullable=False),
        sa.Column("data", JSONB, nullable=False),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("amount_ucr", sa.BigInteger, nullable=False),
        sa.Column("balance_after_ucr", sa.BigInteger, nullable=False),
        _ts("occurred_at"),
        _ts("recorded_at"),
        sa.Column(
            "tx_id", _Xid8(), server_default=sa.text("pg_current_xact_id()"), nullable=False
        ),
        sa.Column("hash", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "version", name="events_pkey"),
        sa.UniqueConstraint("account_id", "event_id", name="events_event_id_key"),
    )
    # The sequence goes when the column goes; pg_get_serial_sequence() also finds it.
    op.execute("ALTER SEQUENCE events_position_seq OWNED BY events.position")
    op.create_index("events_tx_position_idx", "events", ["tx_id", "position"])
    op.create_index("events_position_idx", "events", ["position"])

    op.create_table(
        "accounts",
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("balance_ucr", sa.BigInteger, nullable=False),
        sa.Column("debt_ucr", sa.BigInteger, nullable=False),
        sa.Column("reserved_ucr", sa.BigInteger, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("last_hash", sa.LargeBinary, nullable=False),
        sa.Column("settings", JSONB, nullable=False),
        _ts("opened_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("account_id", name="accounts_pkey"),
    )

    op.create_table(
        "grants",
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("grant_id", UUID(as_uuid=True), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("original_ucr", sa.BigInteger, nullable=False),
        sa.Column("remaining_ucr", sa.BigInteger, nullable=False),
        _ts("expires_at", nullable=True),
        _ts("granted_at"),
        sa.PrimaryKeyConstraint("account_id", "grant_id", name="grants_pkey"),
    )
    op.create_index(
        "grants_live_idx",
        "grants",
        ["account_id"],
        postgresql_where=sa.text("remaining_ucr > 0"),
    )

    op.create_table(
        "idempotency_keys",
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("request_hash", sa.LargeBinary, nullable=False),
        sa.Column("first_version", sa.BigInteger, nullable=False),
        sa.Column("last_version", sa.BigInteger, nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("account_id", "key", name="idempotency_keys_pkey"),
    )

    op.create_table(
        "spend_counters",
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("period", sa.Text, nullable=False),
        sa.Column("spent_ucr", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint(
            "account_id", "scope", "subject", "period", name="spend_counters_pkey"
        ),
    )

    op.create_table(
        "limits",
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("per_run_ucr", sa.BigInteger),
        sa.Column("per_day_ucr", sa.BigInteger),
        sa.Column("per_month_ucr", sa.BigInteger),
        sa.PrimaryKeyConstraint("account_id", "scope", "subject", name="limits_pkey"),
    )

    op.create_table(
        "reservations",
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("reservation_id", UUID(as_uuid=True), nullable=False),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("held_ucr", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        _ts("expires_at"),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("account_id", "reservation_id", name="reservations_pkey"),
    )

    op.create_table(
        "deployments",
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("deployment_id", sa.Text, nullable=False),
        sa.Column("instance_type", sa.Text, nullable=False),
        sa.Column("hourly_ucr", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("hours_charged", sa.BigInteger, nullable=False),
        sa.Column("credits_ucr", sa.BigInteger, nullable=False),
        _ts("segment_started_at", nullable=True),
        sa.Column("segment_first_hour", sa.BigInteger, nullable=False),
        sa.Column("paused_reason", sa.Text),
        _ts("started_at"),
        sa.PrimaryKeyConstraint("account_id", "deployment_id", name="deployments_pkey"),
    )

    op.create_table(
        "coupon_redemptions",
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False),
        _ts("redeemed_at"),
        sa.PrimaryKeyConstraint("account_id", "code", name="coupon_redemptions_pkey"),
    )

    op.create_table(
        "rate_cards",
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("card", JSONB, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        _ts("loaded_at"),
        sa.PrimaryKeyConstraint("version", name="rate_cards_pkey"),
        sa.UniqueConstraint("seq", name="rate_cards_seq_key"),
    )

    op.create_table(
        "coupons",
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("max_redemptions", sa.Integer),
        sa.Column("redeemed_count", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("code", name="coupons_pkey"),
    )

    op.create_table(
        "log_checkpoints",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("tx_id", _Xid8(), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.text("true")),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("name", name="log_checkpoints_pkey"),
    )

    # The log is the source of truth and the hash chain makes edits detectable; this makes
    # them impossible short of dropping the trigger. Corrections are compensating events.
    op.execute(
        """
        CREATE FUNCTION events_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'events is append-only: % is not allowed', TG_OP
                USING ERRCODE = 'restrict_violation';
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER events_append_only_row
        BEFORE UPDATE OR DELETE ON events
        FOR EACH ROW EXECUTE FUNCTION events_append_only()
        """
    )
    # Row triggers never see TRUNCATE, so it needs its own statement-level trigger.
    op.execute(
        """
        CREATE TRIGGER events_append_only_truncate
        BEFORE TRUNCATE ON events
        FOR EACH STATEMENT EXECUTE FUNCTION events_append_only()
        """
    )


def downgrade() -> None:
    for table in (
        "log_checkpoints",
        "coupons",
        "rate_cards",
        "coupon_redemptions",
        "deployments",
        "reservations",
        "limits",
        "spend_counters",
        "idempotency_keys",
        "grants",
        "accounts",
        "events",  # takes its triggers and the owned sequence with it
    ):
        op.drop_table(table)
    op.execute("DROP FUNCTION IF EXISTS events_append_only()")
    op.execute("DROP SEQUENCE IF EXISTS events_position_seq")
