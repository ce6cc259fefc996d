"""Every table, as SQLAlchemy Core. Alembic migrations create them; queries name them here.

Citus-ready: every per-account table carries ``account_id`` and every primary key and unique
constraint includes it, so the schema distributes by ``account_id`` unchanged. The few tables
without it are small catalogues meant to be reference tables (``REFERENCE_TABLES``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Sequence,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.types import UserDefinedType

metadata = MetaData()

#: Tables without ``account_id``: replicated catalogues in a distributed setup.
#: ``api_keys`` is one of them: a request is authenticated by its key id before any account is known.
REFERENCE_TABLES = frozenset({"rate_cards", "coupons", "log_checkpoints", "api_keys", "alembic_version"})


class Xid8(UserDefinedType[Any]):
    """PostgreSQL's 64-bit transaction id, for gap-safe reading of the log."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


def _ts(name: str, nullable: bool = False, **kw: Any) -> Column[Any]:
    return Column(name, DateTime(timezone=True), nullable=nullable, **kw)


events_position_seq = Sequence("events_position_seq", metadata=metadata)

events = Table(
    "events",
    metadata,
    # From a sequence: unique by construction, but visible out of order (see ledger/log.py).
    Column("position", BigInteger, events_position_seq, server_default=events_position_seq.next_value(),
           nullable=False),
    Column("account_id", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("type", Text, nullable=False),
    Column("schema_version", SmallInteger, nullable=False),
    Column("data", JSONB, nullable=False),
    Column("idempotency_key", Text),
    Column("amount_ucr", BigInteger, nullable=False),
    Column("balance_after_ucr", BigInteger, nullable=False),
    _ts("occurred_at"),
    _ts("recorded_at"),
    # The writing transaction: readers never pass a writer that is still in flight.
    Column("tx_id", Xid8, server_default=text("pg_current_xact_id()"), nullable=False),
    # sha256(previous event's hash || this event's canonical bytes): a chain per account.
    Column("hash", LargeBinary, nullable=False),
    PrimaryKeyConstraint("account_id", "version", name="events_pkey"),
    UniqueConstraint("account_id", "event_id", name="events_event_id_key"),
)
Index("events_tx_position_idx", events.c.tx_id, events.c.position)
Index("events_position_idx", events.c.position)

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("plan", Text, nullable=False),
    Column("status", Text, nullable=False),
    # balance = sum(live grants' remaining) - debt; kept in the append's transaction.
    Column("balance_ucr", BigInteger, nullable=False),
    Column("debt_ucr", BigInteger, nullable=False),
    Column("reserved_ucr", BigInteger, nullable=False),
    # Everything the account ever spent, held at MAX_UCR: every spend counter is a part of it, so
    # while it stays small no debit can take a counter past MAX_SPEND_UCR (migration 0009).
    Column("spent_ucr", BigInteger, nullable=False, server_default="0"),
    Column("version", BigInteger, nullable=False),
    Column("last_hash", LargeBinary, nullable=False),
    Column("settings", JSONB, nullable=False),
    _ts("opened_at"),
    _ts("updated_at"),
    PrimaryKeyConstraint("account_id", name="accounts_pkey"),
)

grants = Table(
    "grants",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("grant_id", UUID(as_uuid=True), nullable=False),
    Column("source", Text, nullable=False),
    Column("original_ucr", BigInteger, nullable=False),
    Column("remaining_ucr", BigInteger, nullable=False),
    _ts("expires_at", nullable=True),
    _ts("granted_at"),
    PrimaryKeyConstraint("account_id", "grant_id", name="grants_pkey"),
)
Index(
    "grants_live_idx",
    grants.c.account_id,
    postgresql_where=grants.c.remaining_ucr > 0,
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("request_hash", LargeBinary, nullable=False),
    # The command's events are versions first_version..last_version of the account.
    Column("first_version", BigInteger, nullable=False),
    Column("last_version", BigInteger, nullable=False),
    _ts("created_at"),
    PrimaryKeyConstraint("account_id", "key", name="idempotency_keys_pkey"),
)

spend_counters = Table(
    "spend_counters",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("scope", Text, nullable=False),  # account | agent | member
    Column("subject", Text, nullable=False),  # '' for the account itself
    Column("period", Text, nullable=False),  # M2026-11 | D2026-11-23 | R<run id>
    Column("spent_ucr", BigInteger, nullable=False),
    PrimaryKeyConstraint("account_id", "scope", "subject", "period", name="spend_counters_pkey"),
)

limits = Table(
    "limits",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("per_run_ucr", BigInteger),
    Column("per_day_ucr", BigInteger),
    Column("per_month_ucr", BigInteger),
    PrimaryKeyConstraint("account_id", "scope", "subject", name="limits_pkey"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("reservation_id", UUID(as_uuid=True), nullable=False),
    Column("operation", Text, nullable=False),
    Column("held_ucr", BigInteger, nullable=False),
    Column("status", Text, nullable=False),  # held | settled | released | expired
    _ts("expires_at"),
    _ts("created_at"),
    PrimaryKeyConstraint("account_id", "reservation_id", name="reservations_pkey"),
)

deployments = Table(
    "deployments",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("deployment_id", Text, nullable=False),
    Column("instance_type", Text, nullable=False),
    Column("hourly_ucr", BigInteger, nullable=False),
    Column("status", Text, nullable=False),  # running | paused | stopped
    Column("hours_charged", BigInteger, nullable=False),
    Column("credits_ucr", BigInteger, nullable=False),
    # Paid through ``hours_charged`` hours of running time; ``used_us`` µs of it were used before
    # the running segment that began at ``segment_started_at`` (all of it while not running).
    _ts("segment_started_at", nullable=True),
    Column("used_us", BigInteger, nullable=False),
    Column("paused_reason", Text),
    _ts("started_at"),
    PrimaryKeyConstraint("account_id", "deployment_id", name="deployments_pkey"),
)

disputes = Table(
    "disputes",
    metadata,
    Column("account_id", Text, nullable=False),
    # The disputed purchase's ledger entry id (its ``CreditsPurchased`` event): one dispute each.
    Column("purchase_id", UUID(as_uuid=True), nullable=False),
    Column("dispute_id", Text, nullable=False),
    Column("status", Text, nullable=False),  # open | won | lost
    Column("frozen_ucr", BigInteger, nullable=False),
    Column("restored_ucr", BigInteger, nullable=False),
    _ts("opened_at"),
    _ts("closed_at", nullable=True),
    PrimaryKeyConstraint("account_id", "purchase_id", name="disputes_pkey"),
    CheckConstraint("status IN ('open', 'won', 'lost')", name="disputes_status_check"),
)

coupon_redemptions = Table(
    "coupon_redemptions",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("code", Text, nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    _ts("redeemed_at"),
    PrimaryKeyConstraint("account_id", "code", name="coupon_redemptions_pkey"),
)

rate_cards = Table(
    "rate_cards",
    metadata,
    Column("version", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("card", JSONB, nullable=False),
    Column("source", Text, nullable=False),
    _ts("loaded_at"),
    PrimaryKeyConstraint("version", name="rate_cards_pkey"),
    UniqueConstraint("seq", name="rate_cards_seq_key"),
)

coupons = Table(
    "coupons",
    metadata,
    Column("code", Text, nullable=False),
    Column("max_redemptions", Integer),
    Column("redeemed_count", Integer, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("code", name="coupons_pkey"),
)

log_checkpoints = Table(
    "log_checkpoints",
    metadata,
    Column("name", Text, nullable=False),
    Column("tx_id", Xid8, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    _ts("updated_at"),
    PrimaryKeyConstraint("name", name="log_checkpoints_pkey"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", Text, nullable=False),
    #: NULL for operator keys, which act on every account.
    Column("account_id", Text),
    Column("role", Text, nullable=False),
    Column("name", Text, nullable=False),
    #: The visible part (``cl_live_<id>``); the secret itself is never stored.
    Column("prefix", Text, nullable=False),
    Column("secret_sha256", LargeBinary, nullable=False),
    _ts("created_at"),
    _ts("revoked_at", nullable=True),
    PrimaryKeyConstraint("key_id", name="api_keys_pkey"),
    CheckConstraint("role IN ('operator', 'admin', 'member', 'read')", name="api_keys_role_check"),
    CheckConstraint("(role = 'operator') = (account_id IS NULL)", name="api_keys_scope_check"),
)
Index("api_keys_account_idx", api_keys.c.account_id)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("endpoint_id", Text, nullable=False),
    Column("url", Text, nullable=False),
    #: The Standard Webhooks signing secret (``whsec_...``); shown once, needed to sign.
    Column("secret", Text, nullable=False),
    #: Event types to deliver; NULL: every type.
    Column("event_types", ARRAY(Text)),
    Column("status", Text, nullable=False, server_default=text("'enabled'")),  # enabled | disabled
    Column("disabled_reason", Text),
    _ts("created_at"),
    PrimaryKeyConstraint("account_id", "endpoint_id", name="webhook_endpoints_pkey"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("endpoint_id", Text, nullable=False),
    #: The event's id: also the ``webhook-id`` header, stable across retries.
    Column("event_id", UUID(as_uuid=True), nullable=False),
    #: pending | failed (retried when due) | delivered | gone | dead (out of attempts or age) | skipped
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    _ts("updated_at"),
    #: When the next attempt is due; NULL once the delivery is final.
    _ts("next_attempt_at", nullable=True),
    #: In flight (queued or being sent) until then; NULL or past: the sweep may send it again.
    _ts("lease_until", nullable=True),
    _ts("created_at"),
    PrimaryKeyConstraint("account_id", "endpoint_id", "event_id", name="webhook_deliveries_pkey"),
)
Index("webhook_deliveries_due_idx", webhook_deliveries.c.next_attempt_at,
      postgresql_where=webhook_deliveries.c.next_attempt_at.isnot(None))

# ---- Read models: written only by their projectors (``projections/``), folded from ``events``. ----
# Each row is a pure function of the events, so a fresh fold from position 0 equals the table
# (``credits verify``); nothing here records when it was folded. Lists page by ``version``
# (the account's stream order): newest first, stable while writes go on.

#: One row per usage event (``UsageMetered``): the billing history of executions.
proj_executions = Table(
    "proj_executions",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    _ts("occurred_at"),
    Column("operation", Text, nullable=False),
    Column("quantities", JSONB, nullable=False),
    Column("cost_ucr", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    #: Hours, minutes or seconds in ``quantities`` as seconds; NULL when the usage has no duration.
    Column("duration_s", BigInteger),
    #: The instance type of a deployment's hourly charge.
    Column("machine_type", Text),
    Column("member", Text),
    Column("agent", Text),
    Column("flow", Text),
    Column("run", Text),
    Column("node", Text),
    Column("execution_id", Text),
    Column("deployment_id", Text),
    Column("hour_index", BigInteger),
    Column("reservation_id", UUID(as_uuid=True)),
    Column("gated", Boolean, nullable=False),
    Column("debt_added_ucr", BigInteger, nullable=False),
    Column("rate_card_version", Text, nullable=False),
    PrimaryKeyConstraint("account_id", "version", name="proj_executions_pkey"),
)
Index("proj_executions_time_idx", proj_executions.c.account_id, proj_executions.c.occurred_at)
Index("proj_executions_execution_idx", proj_executions.c.account_id, proj_executions.c.execution_id,
      postgresql_where=proj_executions.c.execution_id.isnot(None))

#: Per deployment: the hours charged and their credits (from the hourly ``UsageMetered``).
proj_deployment_usage = Table(
    "proj_deployment_usage",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("deployment_id", Text, nullable=False),
    Column("instance_type", Text, nullable=False),
    Column("hours", BigInteger, nullable=False),
    Column("credits_ucr", BigInteger, nullable=False),
    _ts("first_at"),
    _ts("last_at"),
    PrimaryKeyConstraint("account_id", "deployment_id", name="proj_deployment_usage_pkey"),
)

#: The activity feed: executions, reservations and what came back of them, purchases, refunds,
#: grants and expiries, each with its ``kind`` and signed amount.
proj_activities = Table(
    "proj_activities",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    _ts("occurred_at"),
    Column("kind", Text, nullable=False),
    Column("operation", Text, nullable=False),
    Column("amount_ucr", BigInteger, nullable=False),
    Column("balance_after_ucr", BigInteger, nullable=False),
    Column("execution_id", Text),
    Column("reservation_id", UUID(as_uuid=True)),
    #: What else the entry says (pack, cents paid, reason, Stripe ids), by kind.
    Column("detail", JSONB, nullable=False),
    PrimaryKeyConstraint("account_id", "version", name="proj_activities_pkey"),
)
#: The feed of one kind (``?kind=``), newest first, without walking the others.
Index("proj_activities_kind_idx", proj_activities.c.account_id, proj_activities.c.kind, proj_activities.c.version)

#: The reservations the activity feed has seen, so what comes back of one is named for its operation.
proj_reservations = Table(
    "proj_reservations",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("reservation_id", UUID(as_uuid=True), nullable=False),
    Column("operation", Text, nullable=False),
    Column("held_ucr", BigInteger, nullable=False),
    PrimaryKeyConstraint("account_id", "reservation_id", name="proj_reservations_pkey"),
)

#: Usage rolled up by hour: ``dim`` 'account' (``key`` '') and each attribution field that was
#: given ('agent', 'member', 'flow', 'deployment'), by operation. Days, weeks and months sum hours.
proj_usage_hourly = Table(
    "proj_usage_hourly",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("dim", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("operation", Text, nullable=False),
    _ts("hour"),
    Column("events", BigInteger, nullable=False),
    Column("cost_ucr", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    PrimaryKeyConstraint("account_id", "dim", "key", "operation", "hour", name="proj_usage_hourly_pkey"),
)
Index("proj_usage_hourly_time_idx", proj_usage_hourly.c.account_id, proj_usage_hourly.c.dim,
      proj_usage_hourly.c.hour)
