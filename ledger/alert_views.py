"""What the alert rules read, loaded at the edge: ``AlertView``s and the alerts already raised.

``load_views`` reads the sliver of state the rules in ``ledger.alerts`` use for many accounts in
one or two statements, and ``unfired`` drops the alerts whose key is already stored. The relay
uses both to enqueue a check only for an account with an alert due and not yet raised; the check
itself (``Ledger.raise_due_alerts``) uses them too.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from ledger import rows
from ledger.alerts import AlertSpec, AlertView
from ledger.clock import day_key, month_key
from ledger.state import CounterKey, Limit, LimitKey

# The statements run on the asyncpg connection under SQLAlchemy's (positional parameters): a
# check is a few small reads, and SQLAlchemy's per-statement overhead was most of their cost.
_ACCOUNTS = (
    "SELECT a.account_id, a.balance_ucr - a.reserved_ucr AS available, a.settings,"
    " (SELECT coalesce(sum(d.hourly_ucr), 0) FROM deployments d"
    "   WHERE d.account_id = a.account_id AND d.status = 'running') AS hourly,"
    " EXISTS (SELECT 1 FROM limits l WHERE l.account_id = a.account_id) AS limited,"
    " (SELECT s.spent_ucr FROM spend_counters s WHERE s.account_id = a.account_id AND s.scope = 'account'"
    "   AND s.subject = '' AND s.period = $2) AS month_spent"
    " FROM accounts a WHERE a.account_id = ANY($1::text[])")
# Each limit with its subject's day and month counters and the runs asked for: exact keys, never
# "every counter of the account" (day and run counters pile up over the years).
_LIMITS = (
    f"SELECT l.account_id, {rows.columns(rows.LIMIT_COLUMNS, 'l')},"
    " (SELECT coalesce(jsonb_object_agg(s.period, s.spent_ucr), '{}') FROM spend_counters s"
    "   WHERE s.account_id = l.account_id AND s.scope = l.scope AND s.subject = l.subject"
    "   AND (s.period IN ($2, $3) OR (s.account_id, s.period) IN"
    "     (SELECT * FROM unnest($4::text[], $5::text[])))) AS spent"
    " FROM limits l WHERE l.account_id = ANY($1::text[])")
_FIRED = (
    "SELECT k.account_id, k.key FROM idempotency_keys k"
    " JOIN unnest($1::text[], $2::text[]) AS q(a, k2) ON k.account_id = q.a AND k.key = q.k2")


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn`` (inside its transaction, if one is open)."""
    return (await conn.get_raw_connection()).driver_connection


async def load_views(conn: AsyncConnection, accounts: Mapping[str, Collection[CounterKey]],
                     now: datetime) -> dict[str, AlertView]:
    """The alert views of ``accounts`` (those that exist), each with the run counters it names.

    One statement, and a second when an account has limits. The same counters as a
    ``CheckAlerts`` snapshot: the account's month, each limited subject's day and month, and
    the runs asked for (of limited subjects: no other run counter can matter).
    """
    if not accounts:
        return {}
    pg = await _driver(conn)
    day, month = day_key(now), month_key(now)
    found = await pg.fetch(_ACCOUNTS, list(accounts), month)
    views: dict[str, AlertView] = {}
    for r in found:
        spent = {("account", "", month): int(r["month_spent"])} if r["month_spent"] is not None else {}
        views[r["account_id"]] = AlertView(
            r["account_id"], int(r["available"]), rows.budget(r["settings"]),
            counters=spent, running_hourly_ucr=int(r["hourly"]))
    limited = [r["account_id"] for r in found if r["limited"]]
    if not limited:
        return views
    runs = sorted({(a, k[2]) for a in limited for k in accounts[a]})
    limits: dict[str, dict[LimitKey, Limit]] = {a: {} for a in limited}
    counters: dict[str, dict[CounterKey, int]] = {a: dict(views[a].counters) for a in limited}
    for lr in await pg.fetch(_LIMITS, limited, day, month, [a for a, _ in runs], [p for _, p in runs]):
        a = lr["account_id"]
        (scope, subject), lim = rows.limit(lr)
        limits[a][(scope, subject)] = lim
        for period, ucr in lr["spent"].items():
            # A run counter only when this subject's check asked for it (as a snapshot loads it).
            if not period.startswith("R") or (scope, subject, period) in accounts[a]:
                counters[a][(scope, subject, period)] = int(ucr)
    for a in limited:
        v = views[a]
        views[a] = AlertView(a, v.available_ucr, v.budget, limits[a], counters[a], v.running_hourly_ucr)
    return views


async def unfired(conn: AsyncConnection, due: Mapping[str, list[AlertSpec]]) -> dict[str, list[AlertSpec]]:
    """``due`` without the alerts already raised (their key is stored); accounts left with none are dropped.

    An alert that fired this period holds on every later check: dropping it here spares the
    writer a replay per check, and spares the relay a message per event.
    """
    asked = [(a, spec.key) for a, specs in due.items() for spec in specs]
    if not asked:
        return {}
    fired = {(r["account_id"], r["key"]) for r in await (await _driver(conn)).fetch(
        _FIRED, [a for a, _ in asked], [k for _, k in asked])}
    out = {a: [spec for spec in specs if (a, spec.key) not in fired] for a, specs in due.items()}
    return {a: specs for a, specs in out.items() if specs}
