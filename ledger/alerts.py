"""Which alerts are due for an account: budget thresholds, agent/member limits, low balance.

The conditions are pure functions of the account state. Each alert has a key naming its kind,
subject, threshold and period (``alert:budget:account::M2026-11:80``): raising it is a command
keyed by that name, so it fires once per period and threshold however often it is checked, and
again next period.

The conditions read only a sliver of the state (available balance, budget, limits, a few spend
counters, the running deployments' hourly cost), so checks do not load a command's full snapshot:
``load_views`` reads that sliver for many accounts in one or two statements, and ``unfired``
drops the alerts whose key is already stored. The relay uses both to enqueue a check only for an
account with an alert due and not yet raised; the check itself uses them too, and the writer
re-checks each alert under the account's lock (``facts`` on the full state) before raising it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.clock import day_key, month_key
from ledger.events import Attribution
from ledger.money import credits_to_exact_ucr, floor_ucr, format_credits
from ledger.rates import RateCard
from ledger.state import AccountState, Budget, CounterKey, Limit, LimitKey

AlertKind = Literal["budget", "agent_limit", "member_limit", "low_balance", "deployment_cost", "daily_summary",
                    "weekly_summary"]

#: ``deployment_cost`` fires when the running deployments would use up the available balance
#: within this many hours.
RUNWAY_HOURS = 24


@dataclass(frozen=True)
class AlertSpec:
    """One alert: ``scope``/``subject``/``period`` name the spend counter it is about."""

    kind: AlertKind
    scope: str
    subject: str
    period: str
    threshold_pct: int

    @property
    def key(self) -> str:
        return f"alert:{self.kind}:{self.scope}:{self.subject}:{self.period}:{self.threshold_pct}"


@dataclass(frozen=True)
class AlertFacts:
    """What an alert says: a level, a message, and the amounts behind it."""

    level: Literal["info", "warning", "critical"]
    message: str
    spent_ucr: int
    limit_ucr: int


@dataclass(frozen=True, slots=True)
class AlertView:
    """What the alert conditions read of one account: the slice of ``AccountState`` they use."""

    account_id: str
    available_ucr: int
    budget: Budget = field(default_factory=Budget)
    limits: Mapping[LimitKey, Limit] = field(default_factory=dict)
    #: The account's month, every limited subject's day and month, and the runs asked for.
    counters: Mapping[CounterKey, int] = field(default_factory=dict)
    running_hourly_ucr: int = 0

    def counter(self, key: CounterKey) -> int:
        return self.counters.get(key, 0)

    def loaded_counters(self) -> Mapping[CounterKey, int]:
        return self.counters


#: The writer checks an alert on the full state, checks before it on a view: same conditions.
Subject = AccountState | AlertView


def _running_hourly(s: Subject) -> int:
    if isinstance(s, AlertView):
        return s.running_hourly_ucr
    return sum(d.hourly_ucr for d in s.deployments.values() if d.status == "running")


def week_key(when: datetime) -> str:
    year, week, _ = when.isocalendar()
    return f"W{year}-{week:02d}"


def _pcts(warn: int, critical: int) -> list[int]:
    return sorted({warn, critical, 100})


def due_alerts(state: Subject, now: datetime, card: RateCard) -> list[AlertSpec]:
    """Every alert whose condition holds now (raised or not: the key decides that)."""
    due: list[AlertSpec] = []
    b = state.budget
    month = month_key(now)
    if b.monthly_limit_ucr is not None:
        for pct in _pcts(b.warn_pct, b.critical_pct):
            spec = AlertSpec("budget", "account", "", month, pct)
            if facts(state, spec, card) is not None:
                due.append(spec)
    for (scope, subject), lim in sorted(state.limits.items()):
        for cap, period in ((lim.per_day_ucr, day_key(now)), (lim.per_month_ucr, month)):
            if cap is None:
                continue
            for pct in _pcts(b.warn_pct, 100):
                spec = AlertSpec("agent_limit" if scope == "agent" else "member_limit", scope, subject, period, pct)
                if facts(state, spec, card) is not None:
                    due.append(spec)
        if lim.per_run_ucr is not None:
            for (cscope, csubject, cperiod) in sorted(state.loaded_counters()):
                if (cscope, csubject) == (scope, subject) and cperiod.startswith("R"):
                    for pct in _pcts(b.warn_pct, 100):
                        spec = AlertSpec("agent_limit" if scope == "agent" else "member_limit", scope, subject,
                                         cperiod, pct)
                        if facts(state, spec, card) is not None:
                            due.append(spec)
    for spec in (AlertSpec("low_balance", "account", "", day_key(now), 100),
                 AlertSpec("deployment_cost", "account", "", day_key(now), 100)):
        if facts(state, spec, card) is not None:
            due.append(spec)
    return due


def facts(state: Subject, spec: AlertSpec, card: RateCard) -> AlertFacts | None:
    """The alert's facts when its condition holds on ``state``, else ``None``."""
    if spec.kind == "low_balance":
        threshold = floor_ucr(credits_to_exact_ucr(card.budget_defaults.low_balance))
        if state.available_ucr >= threshold:
            return None
        return AlertFacts("warning", f"available balance {format_credits(state.available_ucr)} credits is below"
                                     f" {format_credits(threshold)}", state.available_ucr, threshold)
    if spec.kind == "deployment_cost":
        hourly = _running_hourly(state)
        if hourly == 0 or state.available_ucr >= hourly * RUNWAY_HOURS:
            return None
        hours = max(state.available_ucr, 0) // hourly
        return AlertFacts("warning", f"running deployments cost {format_credits(hourly)} credits an hour: the"
                                     f" available balance lasts about {hours} more hours", hourly * RUNWAY_HOURS,
                          state.available_ucr)
    if spec.kind == "budget":
        cap = state.budget.monthly_limit_ucr
        spent = state.counter(("account", "", spec.period))
        what = "monthly budget"
    elif spec.kind in ("agent_limit", "member_limit"):
        lim = state.limits.get((spec.scope, spec.subject))
        if lim is None:
            return None
        cap = {"D": lim.per_day_ucr, "M": lim.per_month_ucr, "R": lim.per_run_ucr}.get(spec.period[:1])
        spent = state.counter((spec.scope, spec.subject, spec.period))
        what = f"{spec.scope} {spec.subject!r} limit for {spec.period[1:]}"
    else:
        return None
    if cap is None or spent * 100 < spec.threshold_pct * cap:
        return None
    level: Literal["info", "warning", "critical"] = (
        "critical" if spec.threshold_pct >= state.budget.critical_pct else "warning")
    return AlertFacts(level, f"{format_credits(spent)} of the {format_credits(cap)} credit {what} spent"
                             f" ({spec.threshold_pct} % threshold)", spent, cap)


def previous_periods(now: datetime) -> tuple[str, str]:
    """The day and ISO week that ended last (what the daily and weekly summaries are about)."""
    return day_key(now - timedelta(days=1)), week_key(now - timedelta(days=7))


def run_counters(attribution: Attribution | None) -> set[CounterKey]:
    """The per-run counters a use with ``attribution`` adds to (what a run limit is checked on)."""
    if attribution is None or not attribution.run:
        return set()
    return {(scope, subject, f"R{attribution.run}")
            for scope, subject in (("agent", attribution.agent), ("member", attribution.member)) if subject}


# The statements run on the asyncpg connection under SQLAlchemy's (positional parameters): a
# check is a few small reads, and SQLAlchemy's per-statement overhead was most of their cost.
_ACCOUNTS = (
    "SELECT a.account_id, a.balance_ucr - a.reserved_ucr AS available, a.settings -> 'budget' AS budget,"
    " (SELECT coalesce(sum(d.hourly_ucr), 0) FROM deployments d"
    "   WHERE d.account_id = a.account_id AND d.status = 'running') AS hourly,"
    " EXISTS (SELECT 1 FROM limits l WHERE l.account_id = a.account_id) AS limited,"
    " (SELECT s.spent_ucr FROM spend_counters s WHERE s.account_id = a.account_id AND s.scope = 'account'"
    "   AND s.subject = '' AND s.period = $2) AS month_spent"
    " FROM accounts a WHERE a.account_id = ANY($1::text[])")
# Each limit with its subject's day and month counters and the runs asked for: exact keys, never
# "every counter of the account" (day and run counters pile up over the years).
_LIMITS = (
    "SELECT l.account_id, l.scope, l.subject, l.per_run_ucr, l.per_day_ucr, l.per_month_ucr,"
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
    rows = await pg.fetch(_ACCOUNTS, list(accounts), month)
    views: dict[str, AlertView] = {}
    for r in rows:
        spent = {("account", "", month): int(r["month_spent"])} if r["month_spent"] is not None else {}
        views[r["account_id"]] = AlertView(
            r["account_id"], int(r["available"]), Budget(**r["budget"]) if r["budget"] else Budget(),
            counters=spent, running_hourly_ucr=int(r["hourly"]))
    limited = [r["account_id"] for r in rows if r["limited"]]
    if not limited:
        return views
    runs = sorted({(a, k[2]) for a in limited for k in accounts[a]})
    limits: dict[str, dict[LimitKey, Limit]] = {a: {} for a in limited}
    counters: dict[str, dict[CounterKey, int]] = {a: dict(views[a].counters) for a in limited}
    for lr in await pg.fetch(_LIMITS, limited, day, month, [a for a, _ in runs], [p for _, p in runs]):
        a, scope, subject = lr["account_id"], lr["scope"], lr["subject"]
        limits[a][(scope, subject)] = Limit(lr["per_run_ucr"], lr["per_day_ucr"], lr["per_month_ucr"])
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
