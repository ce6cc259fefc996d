"""The store's reads: the accounts a batch names, locked and loaded with what its commands need.

One round trip (migration 0009's ``credits_lock_and_load``) takes the accounts' advisory locks
and returns each account with its live grants, its limits and the batch's idempotency keys;
reservations, deployments, purchases, coupons and spend counters are read only when a command
needs them.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from ledger import commands as c
from ledger.clock import day_key, month_key
from ledger.events import Attribution, Event, event_from_row
from ledger.grants import Grant
from ledger.idempotency import StoredKey
from ledger.planner import Loaded
from ledger.rates import RateCard, coupon_code
from ledger.state import (
    AccountState,
    Budget,
    CounterKey,
    Deployment,
    Limit,
    Purchase,
    Reservation,
    hour_due_at,
    spend_keys,
)
from ledger.store.sql import Pg, cached_text, fetch

_NO_ATTR = c.Charge.model_fields["attribution"].default


def lock_key(account_id: str) -> int:
    """The advisory-lock key of an account: a stable signed 64-bit hash of its id."""
    return int.from_bytes(hashlib.blake2b(account_id.encode(), digest_size=8).digest(), "big", signed=True)


#: Commands that debit or gate on spend, and so read the spend counters of ``spend_keys``.
_SPENDING: tuple[type[c.Command], ...] = (c.Charge, c.Meter, c.Reserve, c.Settle, c.StartDeployment,
                                          c.ResumeDeployment, c.ChargeDeploymentHour)


def counter_keys(commands: Sequence[c.Command], states: Mapping[str, AccountState], accounts: set[str],
                  now: datetime) -> list[tuple[str, CounterKey]]:
    """Every spend counter the batch's commands on ``accounts`` may read, per account.

    A debit's (and a gate's) at its ``occurred_at`` (metered usage may be backdated), else at
    ``now``; an hour charge caught up across a day or month also adds to the period it fell due
    in. An alert check reads the account's month and every limited subject's day and month.
    Attributions repeat, so ``spend_keys`` runs once per distinct one.
    """
    out: set[tuple[str, CounterKey]] = set()
    seen: dict[tuple[str | None, str | None, str | None, datetime], tuple[CounterKey, ...]] = {}
    for cmd in commands:
        a = cmd.account_id
        if a not in accounts:
            continue
        if type(cmd) in _SPENDING:
            attr: Attribution = getattr(cmd, "attribution", None) or _NO_ATTR
            when: datetime = getattr(cmd, "occurred_at", None) or now
            memo = (attr.agent, attr.member, attr.run, when)
            keys = seen.get(memo)
            if keys is None:
                keys = seen[memo] = spend_keys(attr, when)
            out.update((a, k) for k in keys)
        if type(cmd) is c.ChargeDeploymentHour:
            d = states[a].deployments.get(cmd.deployment_id)
            if d is not None and d.segment_started_at is not None:
                due = max(hour_due_at(d.segment_started_at, d.used, cmd.hour_index), d.segment_started_at)
                out.update((a, k) for k in spend_keys(_NO_ATTR, due))
        elif type(cmd) is c.RaiseAlert:
            out.update([(a, ("account", "", month_key(now))), (a, (cmd.scope, cmd.subject, cmd.period))])
        elif type(cmd) is c.CheckAlerts:
            out.add((a, ("account", "", month_key(now))))
            out.update((a, k) for k in spend_keys(cmd.attribution, now))
            out.update((a, (scope, subject, period)) for scope, subject in states[a].limits
                       for period in (day_key(now), month_key(now)))
    return sorted(out)


async def load(pg: Pg, commands: Sequence[c.Command], account_ids: list[str], now: datetime, card: RateCard,
               *, lock: bool) -> Loaded:
    """What ``commands`` need decided on, read in as few round trips as the batch allows (with the
    accounts' advisory locks when ``lock``)."""
    out = Loaded()
    # The accounts' locks (``lock``), then the accounts, their live grants, their limits and
    # the batch's idempotency keys, in one round trip (migration 0009's function): grants,
    # limits and keys come back as arrays of rows, decoded by asyncpg in binary. The keys are
    # probed by (account, key) pair, one index lookup each. Limits are read for every account
    # (an index probe, nearly always finding none) rather than in a second round trip only
    # when a command names an agent or a member.
    keyed = [(cmd.account_id, cmd.idempotency_key) for cmd in commands if cmd.idempotency_key]
    rows = await pg.fetch("SELECT * FROM credits_lock_and_load($1, $2, $3, $4)",
                          [lock_key(a) for a in account_ids] if lock else [], account_ids,
                          [a for a, _ in keyed], [k for _, k in keyed])
    account_rows = {r["account_id"]: r for r in rows}
    budgets = {a: Budget(**r["settings"]["budget"]) if "budget" in r["settings"] else Budget()
               for a, r in account_rows.items()}
    grants: dict[str, dict[UUID, Grant]] = defaultdict(dict)
    limits: dict[str, dict[tuple[str, str], Limit]] = defaultdict(dict)
    for a, r in account_rows.items():
        # Row fields in ``Grant``'s own order: grant_id, source, original, remaining, expiry, granted.
        grants[a] = {g[0]: Grant(*g) for g in r["grants"]}
        if r["limits"]:
            limits[a] = {(scope, subject): Limit(run, day, month)
                         for scope, subject, run, day, month in r["limits"]}
        for key, request_hash, first, last in r["keys"] or ():
            out.keys[(a, key)] = StoredKey(bytes(request_hash), first, last)
    # Commands by exact type, found once: isinstance on pydantic models goes through ABCMeta
    # and was a visible share of the write path when every lookup below rescanned the batch.
    by_type: dict[type[c.Command], list[Any]] = defaultdict(list)
    for cmd in commands:
        by_type[type(cmd)].append(cmd)

    def of(*types: type[c.Command]) -> list[Any]:
        return [cmd for t in types for cmd in by_type.get(t, ())]

    # A refund names its purchase by ledger entry id: load the entry and its grant (which may
    # be spent down to zero, so not among the live grants).
    purchases: dict[str, dict[UUID, Purchase]] = defaultdict(dict)
    purchase_ids = [(cmd.account_id, cmd.purchase_id) for cmd in of(c.IssueRefund)
                    if cmd.purchase_id is not None and cmd.account_id in account_rows]
    if purchase_ids:
        for g in await fetch(pg, (
            "SELECT e.account_id, e.event_id, e.occurred_at, g.grant_id, g.source, g.original_ucr,"
            " g.remaining_ucr, g.expires_at, g.granted_at"
            " FROM unnest(CAST(:pa AS text[]), CAST(:pe AS uuid[])) AS p(a, e2)"
            " JOIN events e ON e.account_id = p.a AND e.event_id = p.e2 AND e.type = 'CreditsPurchased'"
            " JOIN grants g ON g.account_id = e.account_id AND g.grant_id = CAST(e.data ->> 'grant_id' AS uuid)"),
            {"pa": [a for a, _ in purchase_ids], "pe": [e for _, e in purchase_ids]},
        ):
            grants[g["account_id"]][g["grant_id"]] = Grant(
                g["grant_id"], g["source"], g["original_ucr"], g["remaining_ucr"], g["expires_at"],
                g["granted_at"])
            purchases[g["account_id"]][g["event_id"]] = Purchase(g["event_id"], g["grant_id"], g["occurred_at"])

    reservations: dict[str, dict[UUID, Reservation]] = defaultdict(dict)
    res_ids = [(cmd.account_id, cmd.reservation_id) for cmd in of(c.Settle, c.Release)]
    expiring = [cmd.account_id for cmd in of(c.ExpireReservations)]
    if res_ids or expiring:
        for rr in (await fetch(pg, (
            "SELECT r.account_id, r.reservation_id, r.operation, r.held_ucr, r.status, r.expires_at,"
            " r.created_at FROM reservations r"
            " JOIN unnest(CAST(:a AS text[]), CAST(:r AS uuid[])) AS q(a, r2)"
            " ON r.account_id = q.a AND r.reservation_id = q.r2"
            " UNION SELECT account_id, reservation_id, operation, held_ucr, status, expires_at,"
            " created_at FROM reservations WHERE account_id = ANY(:e) AND status = 'held'"
            " AND expires_at <= :now"),
            {"a": [a for a, _ in res_ids], "r": [r for _, r in res_ids], "e": expiring, "now": now},
        )):
            reservations[rr["account_id"]][rr["reservation_id"]] = Reservation(
                rr["reservation_id"], rr["operation"], rr["held_ucr"], rr["status"], rr["expires_at"],
                rr["created_at"])

    deployments: dict[str, dict[str, Deployment]] = defaultdict(dict)
    dep_ids = [(cmd.account_id, cmd.deployment_id) for cmd in of(
        c.StartDeployment, c.ChargeDeploymentHour, c.StopDeployment, c.PauseDeployment, c.ResumeDeployment)]
    # Debt pauses and the deployment-cost alert look at every running deployment.
    debtors = [cmd.account_id for cmd in of(c.PauseForDebt, c.CheckAlerts, c.RaiseAlert)]
    if dep_ids or debtors:
        for dr in (await fetch(pg, (
            "SELECT d.* FROM deployments d JOIN unnest(CAST(:a AS text[]), CAST(:d AS text[])) AS q(a, d2)"
            " ON d.account_id = q.a AND d.deployment_id = q.d2"
            " UNION SELECT * FROM deployments WHERE account_id = ANY(:debtors) AND status = 'running'"),
            {"a": [a for a, _ in dep_ids], "d": [d for _, d in dep_ids], "debtors": debtors},
        )):
            deployments[dr["account_id"]][dr["deployment_id"]] = Deployment(
                dr["deployment_id"], dr["instance_type"], dr["hourly_ucr"], dr["status"], dr["hours_charged"],
                dr["credits_ucr"], dr["segment_started_at"], timedelta(microseconds=dr["used_us"]),
                dr["paused_reason"], dr["started_at"])

    redeemed: dict[str, set[str]] = defaultdict(set)
    coupon_cmds = of(c.RedeemCoupon)
    if coupon_cmds:
        # Every code the accounts redeemed (a handful each), compared as ``coupon_code`` does:
        # a redemption stored under another spelling still counts.
        for cr2 in (await fetch(pg, "SELECT account_id, code FROM coupon_redemptions WHERE account_id = ANY(:a)",
                                 {"a": sorted({cmd.account_id for cmd in coupon_cmds})})):
            redeemed[cr2["account_id"]].add(coupon_code(cr2["code"]))
        # The card defines coupons; their shared redemption count lives in ``coupons``, under
        # the card's spelling of the code.
        found = {cmd.code: card.coupon(cmd.code) for cmd in coupon_cmds}
        card_codes = sorted({cp.code for cp in found.values() if cp is not None})
        await fetch(pg, (
            "INSERT INTO coupons (code, max_redemptions) SELECT * FROM unnest(CAST(:c AS text[]),"
            " CAST(:m AS int[])) ON CONFLICT (code) DO UPDATE SET max_redemptions = excluded.max_redemptions"),
            {"c": card_codes, "m": [card.coupons[k].max_redemptions for k in card_codes]})
        # The redemption count is global to the coupon: lock its row (after every account
        # lock, in code order) so two accounts cannot both take the last redemption.
        for cp in (await fetch(pg, (
            "SELECT code, max_redemptions, redeemed_count FROM coupons WHERE code = ANY(:c)"
            " ORDER BY code FOR UPDATE"), {"c": card_codes})):
            out.coupon_stock[cp["code"]] = (None if cp["max_redemptions"] is None
                                         else cp["max_redemptions"] - cp["redeemed_count"])

    for a, r in account_rows.items():
        out.states[a] = AccountState(
            account_id=a, exists=True, name=r["name"], plan=r["plan"], status=r["status"], version=r["version"],
            last_hash=bytes(r["last_hash"]), opened_at=r["opened_at"], debt_ucr=r["debt_ucr"],
            reserved_ucr=r["reserved_ucr"], allowance_cycle=r["settings"].get("allowance_cycle", -1),
            spent_ucr=r["spent_ucr"], budget=budgets[a], grants=grants[a], limits=limits[a], counters=None,
            reservations=reservations[a], deployments=deployments[a],
            coupons_redeemed=frozenset(redeemed[a]), purchases=purchases[a])
    # Spend counters, for the accounts whose budget, limits or alert checks read them (a debit
    # needs them only near MAX_SPEND_UCR: ``ledger.decide.spending._check_spend_range``).
    gated = {a for a, st in out.states.items() if st.budget.monthly_limit_ucr is not None or st.limits}
    gated.update(cmd.account_id for cmd in of(c.CheckAlerts, c.RaiseAlert))
    await load_counters(pg, out, commands, gated, now)
    return out

async def load_counters(pg: Pg, loaded: Loaded, commands: Sequence[c.Command], accounts: set[str],
                        now: datetime) -> None:
    """Load into ``loaded`` every spend counter the batch's commands on ``accounts`` may read."""
    accounts = {a for a in accounts if a in loaded.states}
    keys = counter_keys(commands, loaded.states, accounts, now)
    found: dict[str, dict[CounterKey, int]] = defaultdict(dict)
    if keys:
        for cr in (await fetch(pg, (
            "SELECT s.account_id, s.scope, s.subject, s.period, s.spent_ucr FROM spend_counters s"
            " JOIN unnest(CAST(:a AS text[]), CAST(:s AS text[]), CAST(:j AS text[]), CAST(:p AS text[]))"
            " AS q(a, s2, j, p) ON s.account_id = q.a AND s.scope = q.s2 AND s.subject = q.j"
            " AND s.period = q.p"),
            {"a": [a for a, _ in keys], "s": [k[0] for _, k in keys],
             "j": [k[1] for _, k in keys], "p": [k[2] for _, k in keys]},
        )):
            found[cr["account_id"]][(cr["scope"], cr["subject"], cr["period"])] = cr["spent_ucr"]
    for a in accounts:
        loaded.states[a] = replace(loaded.states[a], counters=found[a])


EVENT_FIELDS = ("position", "account_id", "version", "event_id", "type", "schema_version", "data",
                "idempotency_key", "amount_ucr", "balance_after_ucr", "occurred_at", "recorded_at")
#: What a query selects to rebuild events with ``row_to_event``.
EVENT_COLUMNS = ", ".join(EVENT_FIELDS)


def row_to_event(r: Any) -> Event:
    """An event from an ``events`` row (any query selecting ``EVENT_COLUMNS``)."""
    return event_from_row(
        type_=r.type, schema_version=r.schema_version, data=r.data,
        envelope={"event_id": r.event_id, "account_id": r.account_id, "occurred_at": r.occurred_at,
                  "recorded_at": r.recorded_at, "idempotency_key": r.idempotency_key,
                  "amount_ucr": r.amount_ucr, "balance_after_ucr": r.balance_after_ucr},
    )


async def read_versions(conn: AsyncConnection, account_id: str, first: int, last: int) -> list[Event]:
    """Events ``first..last`` of one account, in order."""
    return (await read_ranges(conn, [(account_id, first, last)]))[(account_id, first, last)]


async def read_ranges(
    conn: AsyncConnection, ranges: list[tuple[str, int, int]]
) -> dict[tuple[str, int, int], list[Event]]:
    """Events of several ``(account, first, last)`` version ranges in one query, each in order."""
    rows = (await conn.execute(cached_text(
        f"SELECT q.a AS q_a, q.f AS q_f, q.l AS q_l, {', '.join('e.' + f for f in EVENT_FIELDS)}"
        " FROM unnest(CAST(:a AS text[]), CAST(:f AS bigint[]), CAST(:l AS bigint[])) AS q(a, f, l)"
        " JOIN events e ON e.account_id = q.a AND e.version BETWEEN q.f AND q.l ORDER BY e.account_id, e.version"),
        {"a": [r[0] for r in ranges], "f": [r[1] for r in ranges], "l": [r[2] for r in ranges]})).all()
    out: dict[tuple[str, int, int], list[Event]] = {r: [] for r in ranges}
    for row in rows:
        out[(row.q_a, row.q_f, row.q_l)].append(row_to_event(row))
    return out
