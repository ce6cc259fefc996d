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
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from ledger import commands as c
from ledger import rows as rows_
from ledger.clock import day_key, month_key
from ledger.events import Attribution, Event
from ledger.grants import Grant
from ledger.planner import Loaded
from ledger.rates import RateCard, coupon_code
from ledger.state import (
    AccountState,
    CounterKey,
    Deployment,
    Purchase,
    Reservation,
    hour_due_at,
    spend_keys,
)
from ledger.store.sql import Pg, fetch

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
    rows = await fetch(pg, "SELECT * FROM credits_lock_and_load(:locks, :accounts, :key_accounts, :keys)",
                       {"locks": [lock_key(a) for a in account_ids] if lock else [], "accounts": account_ids,
                        "key_accounts": [a for a, _ in keyed], "keys": [k for _, k in keyed]})
    account_rows = {r["account_id"]: r for r in rows}
    for a, r in account_rows.items():
        for k in r["keys"] or ():
            key, stored = rows_.stored_key(k)
            out.keys[(a, key)] = stored
    # Commands by exact type, found once: isinstance on pydantic models goes through ABCMeta
    # and was a visible share of the write path when every lookup below rescanned the batch.
    by_type: dict[type[c.Command], list[Any]] = defaultdict(list)
    for cmd in commands:
        by_type[type(cmd)].append(cmd)

    def of(*types: type[c.Command]) -> list[Any]:
        return [cmd for t in types for cmd in by_type.get(t, ())]

    grants = {a: {g.grant_id: g for g in map(rows_.grant, r["grants"])} for a, r in account_rows.items()}
    # Each of these is read only when a command of the batch names it (most batches are usage
    # alone and read none): the other states get empty collections.
    refunding = of(c.IssueRefund, c.RecordDispute, c.CloseDispute)
    settling, expiring = of(c.Settle, c.Release), of(c.ExpireReservations)
    running = of(c.StartDeployment, c.ChargeDeploymentHour, c.StopDeployment, c.PauseDeployment,
                 c.ResumeDeployment)
    # Debt pauses and the deployment-cost alert look at every running deployment.
    debtors = of(c.PauseForDebt, c.CheckAlerts, c.RaiseAlert)
    redeeming = of(c.RedeemCoupon)
    purchases = await _purchases(pg, refunding, account_rows, grants) if refunding else {}
    reservations = await _reservations(pg, settling, expiring, now) if settling or expiring else {}
    deployments = await _deployments(pg, running, debtors) if running or debtors else {}
    redeemed = await _coupons(pg, out, redeeming, card) if redeeming else {}
    for a, r in account_rows.items():
        out.states[a] = rows_.account(
            r, grants=grants[a], limits=dict(map(rows_.limit, r["limits"])) if r["limits"] else {}, counters=None,
            reservations=reservations.get(a, {}), deployments=deployments.get(a, {}),
            coupons_redeemed=frozenset(redeemed.get(a, ())), purchases=purchases.get(a, {}))
    # Spend counters, for the accounts whose budget, limits or alert checks read them (a debit
    # needs them only near MAX_SPEND_UCR: ``ledger.decide.spending._check_spend_range``).
    gated = {a for a, st in out.states.items() if st.budget.monthly_limit_ucr is not None or st.limits}
    gated.update(cmd.account_id for cmd in of(c.CheckAlerts, c.RaiseAlert))
    if gated:
        await load_counters(pg, out, commands, gated, now)
    return out


async def _purchases(pg: Pg, naming: list[c.IssueRefund | c.RecordDispute | c.CloseDispute],
                     accounts: Mapping[str, Any],
                     grants: dict[str, dict[UUID, Grant]]) -> dict[str, dict[UUID, Purchase]]:
    """The purchases the batch's refunds and disputes name, by ledger entry id, with their disputes
    and their grants (which may be spent down to zero, so not among the live grants: added to
    ``grants``)."""
    purchases: dict[str, dict[UUID, Purchase]] = defaultdict(dict)
    purchase_ids = [(cmd.account_id, cmd.purchase_id) for cmd in naming
                    if cmd.purchase_id is not None and cmd.account_id in accounts]
    if purchase_ids:
        disputed = ", ".join(f"d.{n}" for n in rows_.DISPUTE_COLUMNS if n != "purchase_id")
        for r in await fetch(pg, (
            f"SELECT e.account_id, e.event_id, e.occurred_at, {rows_.columns(rows_.GRANT_COLUMNS, 'g')},"
            f" {disputed}"
            " FROM unnest(CAST(:pa AS text[]), CAST(:pe AS uuid[])) AS p(a, e2)"
            " JOIN events e ON e.account_id = p.a AND e.event_id = p.e2 AND e.type = 'CreditsPurchased'"
            " JOIN grants g ON g.account_id = e.account_id AND g.grant_id = CAST(e.data ->> 'grant_id' AS uuid)"
            " LEFT JOIN disputes d ON d.account_id = e.account_id AND d.purchase_id = e.event_id"),
            {"pa": [a for a, _ in purchase_ids], "pe": [e for _, e in purchase_ids]},
        ):
            grants[r["account_id"]][r["grant_id"]] = rows_.grant(r)
            purchases[r["account_id"]][r["event_id"]] = Purchase(r["event_id"], r["grant_id"], r["occurred_at"],
                                                                 rows_.dispute(r))
    return purchases


async def _reservations(pg: Pg, named: list[c.Settle | c.Release], expiring: list[c.ExpireReservations],
                        now: datetime) -> dict[str, dict[UUID, Reservation]]:
    """The reservations the batch names, and those held past their expiry on accounts it expires."""
    out: dict[str, dict[UUID, Reservation]] = defaultdict(dict)
    res_ids = [(cmd.account_id, cmd.reservation_id) for cmd in named]
    if res_ids or expiring:
        cols = rows_.columns(rows_.RESERVATION_COLUMNS)
        for r in (await fetch(pg, (
            f"SELECT r.account_id, {rows_.columns(rows_.RESERVATION_COLUMNS, 'r')} FROM reservations r"
            " JOIN unnest(CAST(:a AS text[]), CAST(:r AS uuid[])) AS q(a, r2)"
            " ON r.account_id = q.a AND r.reservation_id = q.r2"
            f" UNION SELECT account_id, {cols} FROM reservations WHERE account_id = ANY(:e) AND status = 'held'"
            " AND expires_at <= :now"),
            {"a": [a for a, _ in res_ids], "r": [r for _, r in res_ids],
             "e": [cmd.account_id for cmd in expiring], "now": now},
        )):
            out[r["account_id"]][r["reservation_id"]] = rows_.reservation(r)
    return out


async def _deployments(pg: Pg, named: list[Any], debtors: list[c.Command]) -> dict[str, dict[str, Deployment]]:
    """The deployments the batch names, and every running one of ``debtors``' accounts."""
    out: dict[str, dict[str, Deployment]] = defaultdict(dict)
    dep_ids = [(cmd.account_id, cmd.deployment_id) for cmd in named]
    if dep_ids or debtors:
        cols = rows_.columns(rows_.DEPLOYMENT_COLUMNS)
        for r in (await fetch(pg, (
            f"SELECT d.account_id, {rows_.columns(rows_.DEPLOYMENT_COLUMNS, 'd')} FROM deployments d"
            " JOIN unnest(CAST(:a AS text[]), CAST(:d AS text[])) AS q(a, d2)"
            " ON d.account_id = q.a AND d.deployment_id = q.d2"
            f" UNION SELECT account_id, {cols} FROM deployments WHERE account_id = ANY(:debtors)"
            " AND status = 'running'"),
            {"a": [a for a, _ in dep_ids], "d": [d for _, d in dep_ids],
             "debtors": [cmd.account_id for cmd in debtors]},
        )):
            out[r["account_id"]][r["deployment_id"]] = rows_.deployment(r)
    return out


async def _coupons(pg: Pg, out: Loaded, redeeming: list[c.RedeemCoupon], card: RateCard) -> dict[str, set[str]]:
    """The codes the redeeming accounts used, and each coupon's stock (into ``out``), its row locked."""
    redeemed: dict[str, set[str]] = defaultdict(set)
    if not redeeming:
        return redeemed
    # Every code the accounts redeemed (a handful each), compared as ``coupon_code`` does:
    # a redemption stored under another spelling still counts.
    for r in (await fetch(pg, "SELECT account_id, code FROM coupon_redemptions WHERE account_id = ANY(:a)",
                          {"a": sorted({cmd.account_id for cmd in redeeming})})):
        redeemed[r["account_id"]].add(coupon_code(r["code"]))
    # The card defines coupons; their shared redemption count lives in ``coupons``, under the
    # card's spelling of the code.
    found = {cmd.code: card.coupon(cmd.code) for cmd in redeeming}
    card_codes = sorted({cp.code for cp in found.values() if cp is not None})
    await fetch(pg, (
        "INSERT INTO coupons (code, max_redemptions) SELECT * FROM unnest(CAST(:c AS text[]),"
        " CAST(:m AS int[])) ON CONFLICT (code) DO UPDATE SET max_redemptions = excluded.max_redemptions"),
        {"c": card_codes, "m": [card.coupons[k].max_redemptions for k in card_codes]})
    # The redemption count is global to the coupon: lock its row (after every account lock, in
    # code order) so two accounts cannot both take the last redemption.
    for cp in (await fetch(pg, (
        "SELECT code, max_redemptions, redeemed_count FROM coupons WHERE code = ANY(:c)"
        " ORDER BY code FOR UPDATE"), {"c": card_codes})):
        out.coupon_stock[cp["code"]] = (None if cp["max_redemptions"] is None
                                        else cp["max_redemptions"] - cp["redeemed_count"])
    return redeemed


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


async def read_versions(conn: AsyncConnection, account_id: str, first: int, last: int) -> list[Event]:
    """Events ``first..last`` of one account, in order."""
    pg: Pg = (await conn.get_raw_connection()).driver_connection
    return (await read_ranges(pg, [(account_id, first, last)]))[(account_id, first, last)]


async def read_ranges(pg: Pg, ranges: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], list[Event]]:
    """Events of several ``(account, first, last)`` version ranges in one query, each in order."""
    found = await fetch(pg, (
        f"SELECT q.a AS q_a, q.f AS q_f, q.l AS q_l, {rows_.columns(rows_.EVENT_FIELDS, 'e')}"
        " FROM unnest(CAST(:a AS text[]), CAST(:f AS bigint[]), CAST(:l AS bigint[])) AS q(a, f, l)"
        " JOIN events e ON e.account_id = q.a AND e.version BETWEEN q.f AND q.l ORDER BY e.account_id, e.version"),
        {"a": [r[0] for r in ranges], "f": [r[1] for r in ranges], "l": [r[2] for r in ranges]})
    out: dict[tuple[str, int, int], list[Event]] = {r: [] for r in ranges}
    for row in found:
        out[(row["q_a"], row["q_f"], row["q_l"])].append(rows_.event(row["account_id"], row))
    return out
