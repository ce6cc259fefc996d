"""The store's writes: one batch's events and the inline state they changed, as one statement.

Each table gets one multi-row statement (its rows as one JSON parameter, ``sql.rows_from``); they
run together as data-modifying CTEs of a single statement (they touch different rows, so their
order does not matter). Only rows that differ from what was loaded are written.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from uuid import UUID

import orjson

from ledger.events import UsageMetered
from ledger.planner import WritePlan
from ledger.rows import (
    DEPLOYMENT_COLUMNS,
    DISPUTE_COLUMNS,
    GRANT_COLUMNS,
    LIMIT_COLUMNS,
    RESERVATION_COLUMNS,
    columns,
    deployment_row,
    dispute_row,
    grant_row,
    limit_row,
    reservation_row,
    settings_json,
)
from ledger.state import AccountState, spend_keys
from ledger.store.sql import Pg, fetch, renamed, rows, rows_from

# ---- the statements, one per table (built once: a batch only fills in their parameters) --------

INSERT_EVENTS = (
    "INSERT INTO events (account_id, version, event_id, type, schema_version, data, idempotency_key,"
    " amount_ucr, balance_after_ucr, occurred_at, recorded_at, hash) "
    + rows_from("a text", "v bigint", "id uuid", "t text", "sv smallint", "d jsonb", "k text",
                "amt bigint", "bal bigint", "occ timestamptz", "rec timestamptz", "h bytea"))
INSERT_ACCOUNTS = (
    "INSERT INTO accounts (account_id, name, plan, status, balance_ucr, debt_ucr, reserved_ucr,"
    " spent_ucr, version, last_hash, settings, opened_at, updated_at)"
    " SELECT o.*, CAST(:now AS timestamptz) FROM ("
    + rows_from("a text", "n text", "p text", "st text", "b bigint", "d bigint", "r bigint",
                "sp bigint", "v bigint", "h bytea", "s jsonb", "o timestamptz") + ") AS o")
UPDATE_ACCOUNTS = (
    "UPDATE accounts SET plan = u.p, status = u.st, balance_ucr = u.b, debt_ucr = u.d,"
    " reserved_ucr = u.r, spent_ucr = u.sp, version = u.v, last_hash = u.h, settings = u.s,"
    " updated_at = :now FROM ("
    + rows_from("a text", "p text", "st text", "b bigint", "d bigint", "r bigint", "sp bigint",
                "v bigint", "h bytea", "s jsonb") + ") AS u WHERE accounts.account_id = u.a")
UPSERT_GRANTS = (
    f"INSERT INTO grants (account_id, {columns(GRANT_COLUMNS)}) "
    + rows_from("a text", "g uuid", "s text", "o bigint", "r bigint", "e timestamptz", "t timestamptz")
    + " ON CONFLICT (account_id, grant_id) DO UPDATE SET remaining_ucr = excluded.remaining_ucr")
UPSERT_DISPUTES = (
    f"INSERT INTO disputes (account_id, {columns(DISPUTE_COLUMNS)}) "
    + rows_from("a text", "p uuid", "i text", "s text", "f bigint", "r bigint", "o timestamptz",
                "c timestamptz")
    + " ON CONFLICT (account_id, purchase_id) DO UPDATE SET status = excluded.status,"
    " restored_ucr = excluded.restored_ucr, closed_at = excluded.closed_at")
UPSERT_RESERVATIONS = (
    f"INSERT INTO reservations (account_id, {columns(RESERVATION_COLUMNS)}) "
    + rows_from("a text", "r uuid", "o text", "h bigint", "s text", "e timestamptz", "c timestamptz")
    + " ON CONFLICT (account_id, reservation_id) DO UPDATE SET status = excluded.status")
UPSERT_DEPLOYMENTS = (
    f"INSERT INTO deployments (account_id, {columns(DEPLOYMENT_COLUMNS)}) "
    + rows_from("a text", "d text", "i text", "h bigint", "s text", "n bigint", "c bigint",
                "ss timestamptz", "u bigint", "pr text", "st timestamptz")
    + " ON CONFLICT (account_id, deployment_id) DO UPDATE SET status = excluded.status,"
    " hours_charged = excluded.hours_charged, credits_ucr = excluded.credits_ucr,"
    " segment_started_at = excluded.segment_started_at,"
    " used_us = excluded.used_us, paused_reason = excluded.paused_reason")
UPSERT_LIMITS = (
    f"INSERT INTO limits (account_id, {columns(LIMIT_COLUMNS)}) "
    + rows_from("a text", "s text", "j text", "r bigint", "d bigint", "m bigint")
    + " ON CONFLICT (account_id, scope, subject) DO UPDATE SET per_run_ucr = excluded.per_run_ucr,"
    " per_day_ucr = excluded.per_day_ucr, per_month_ucr = excluded.per_month_ucr")
#: Spend counters are written as deltas: only the keys a batch gates on are ever loaded.
ADD_TO_SPEND_COUNTERS = (
    "INSERT INTO spend_counters (account_id, scope, subject, period, spent_ucr) "
    + rows_from("a text", "s text", "j text", "p text", "v bigint")
    + " ON CONFLICT (account_id, scope, subject, period)"
    " DO UPDATE SET spent_ucr = spend_counters.spent_ucr + excluded.spent_ucr")
INSERT_KEYS = (
    "INSERT INTO idempotency_keys (account_id, key, request_hash, first_version, last_version,"
    " created_at) SELECT k.*, CAST(:now AS timestamptz) FROM ("
    + rows_from("a text", "k text", "h bytea", "f bigint", "l bigint") + ") AS k")
INSERT_REDEMPTIONS = (
    "INSERT INTO coupon_redemptions (account_id, code, event_id, redeemed_at)"
    " SELECT r.*, CAST(:now AS timestamptz) FROM (" + rows_from("a text", "c text", "e uuid") + ") AS r")
ADD_TO_COUPON_COUNTS = (
    "UPDATE coupons SET redeemed_count = redeemed_count + q.n FROM ("
    + rows_from("c text", "n int") + ") AS q WHERE coupons.code = q.c")
INSERT_API_KEYS = (
    "INSERT INTO api_keys (key_id, account_id, role, name, prefix, secret_sha256, created_at) "
    + rows_from("ki text", "ka text", "kr text", "kn text", "kp text", "ks bytea", "kt timestamptz"))
#: Scoped to the account, so a command can only ever revoke its own account's key.
REVOKE_API_KEYS = (
    "UPDATE api_keys SET revoked_at = :rnow FROM (" + rows_from("a text", "k text") + ") AS r"
    " WHERE api_keys.key_id = r.k AND api_keys.account_id = r.a AND api_keys.revoked_at IS NULL")


class Writes:
    """Statements collected for one round trip: each becomes a data-modifying CTE."""

    def __init__(self, first_event: tuple[str, int, UUID] | None = None) -> None:
        self.parts: list[str] = []
        self.params: dict[str, Any] = {}
        #: The batch's first new event (account, version, id): it is in the log iff the batch committed.
        self.first_event = first_event

    def add(self, sql: str, params: dict[str, Any]) -> None:
        n = len(self.parts)
        self.parts.append(renamed(sql, n))
        self.params.update({f"w{n}_{k}": v for k, v in params.items()})

    def size(self) -> int:
        """The characters of the statement's text parameters (the rows' JSON)."""
        return sum(len(v) for v in self.params.values() if type(v) is str)

    def statement(self) -> str:
        ctes = ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(self.parts))
        return f"WITH {ctes} SELECT 1"

    async def run(self, pg: Pg) -> None:
        if self.parts:
            await fetch(pg, self.statement(), self.params)


def collect(plan: WritePlan) -> Writes:
    """The batch's write plan as one statement."""
    w = Writes(plan.first_event)
    if plan.events:
        _insert_events(w, plan)
    _write_state(w, plan)
    _write_api_keys(w, plan)
    return w


def _insert_events(w: Writes, plan: WritePlan) -> None:
    w.add(
        INSERT_EVENTS,
        {"rows": rows((e.account_id, v, e.event_id, e.type, e.schema_version, orjson.Fragment(data_json),
                       e.idempotency_key, e.amount_ucr, e.balance_after_ucr, e.occurred_at, e.recorded_at, h)
                      for e, v, h, data_json in plan.events)})


def _write_api_keys(w: Writes, plan: WritePlan) -> None:
    """``api_keys`` rows created or revoked by the batch."""
    if plan.api_keys_created:
        w.add(INSERT_API_KEYS, {"rows": rows(plan.api_keys_created)})
    if plan.api_keys_revoked:
        w.add(REVOKE_API_KEYS, {"rnow": plan.now, "rows": rows(plan.api_keys_revoked)})


def _write_state(w: Writes, plan: WritePlan) -> None:
    """Update the inline state the batch changed, then store its idempotency keys."""
    now, original, states = plan.now, plan.original, plan.states
    changed = [s for a, s in states.items() if s.version != (original[a].version if a in original else 0)]
    opened = [s for s in changed if s.account_id not in original]
    updated = [s for s in changed if s.account_id in original]
    if opened:
        w.add(
            INSERT_ACCOUNTS,
            {"now": now, "rows": rows((s.account_id, s.name, s.plan, s.status, s.balance_ucr, s.debt_ucr,
                                        s.reserved_ucr, s.spent_ucr, s.version, s.last_hash,
                                        orjson.Fragment(settings_json(s)), s.opened_at) for s in opened)})
    if updated:
        w.add(
            UPDATE_ACCOUNTS,
            {"now": now, "rows": rows((s.account_id, s.plan, s.status, s.balance_ucr, s.debt_ucr, s.reserved_ucr,
                                        s.spent_ucr, s.version, s.last_hash, orjson.Fragment(settings_json(s)))
                                       for s in updated)})

    grant_rows, res_rows, dep_rows, limit_rows, dispute_rows = [], [], [], [], []
    for s in changed:
        before = original.get(s.account_id) or AccountState(account_id=s.account_id)
        grant_rows += [grant_row(s.account_id, g) for gid, g in s.grants.items() if before.grants.get(gid) != g]
        res_rows += [reservation_row(s.account_id, r) for rid, r in s.reservations.items()
                     if before.reservations.get(rid) != r]
        dep_rows += [deployment_row(s.account_id, d) for did, d in s.deployments.items()
                     if before.deployments.get(did) != d]
        limit_rows += [limit_row(s.account_id, k, lim) for k, lim in s.limits.items() if before.limits.get(k) != lim]
        dispute_rows += [dispute_row(s.account_id, pid, p.dispute) for pid, p in s.payments.purchases.items()
                         if p.dispute is not None and before.payments.purchases.get(pid) != p]
    if grant_rows:
        w.add(UPSERT_GRANTS, {"rows": rows(grant_rows)})
    if dispute_rows:
        w.add(UPSERT_DISPUTES, {"rows": rows(dispute_rows)})
    if res_rows:
        w.add(UPSERT_RESERVATIONS, {"rows": rows(res_rows)})
    if dep_rows:
        w.add(UPSERT_DEPLOYMENTS, {"rows": rows(dep_rows)})
    if limit_rows:
        w.add(UPSERT_LIMITS, {"rows": rows(limit_rows)})

    deltas: dict[tuple[str, str, str, str], int] = defaultdict(int)
    for e, _, _, _ in plan.events:
        if isinstance(e, UsageMetered):
            for k in spend_keys(e.attribution, e.occurred_at):
                deltas[(e.account_id, *k)] += e.cost_ucr
    if deltas:
        w.add(ADD_TO_SPEND_COUNTERS, {"rows": rows((*k, v) for k, v in deltas.items())})

    if plan.keys:
        w.add(INSERT_KEYS, {"now": now, "rows": rows(plan.keys)})

    if plan.redeemed:
        w.add(INSERT_REDEMPTIONS, {"now": now, "rows": rows(plan.redeemed)})
        counts: dict[str, int] = defaultdict(int)
        for _, code, _ in plan.redeemed:
            counts[code] += 1
        w.add(ADD_TO_COUPON_COUNTS, {"rows": rows(counts.items())})

