"""Reads of usage: buckets of the hourly rollup by operation, attribution or integration; the
analytics of a 7/14/30-day window; one run's cost. Each says how fresh it is.

The rollup holds operations only: integrations and models are the current rate card's view of
them (``ledger.rates.integration_of``), applied here at read time, so a card that renames an
integration needs no rebuild. Before the projectors have run, every read is empty, with the lag
of what they have yet to fold.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import rows as row_map
from ledger.errors import InvalidRequest, NotFound, UnknownAccount
from ledger.rates import RateCard
from ledger.service import Ledger
from ledger.views import DeploymentView
from projections.analytics import (
    TOP_REQUESTS,
    WINDOWS,
    Analytics,
    DayRow,
    Request,
    analyse,
    integration,
    is_model,
    midnight,
    reads_since,
    window_start,
)
from projections.freshness import Freshness, freshness
from projections.history import HISTORY
from projections.usage import USAGE

BucketName = Literal["hour", "day", "week", "month"]
By = Literal["operation", "agent", "member", "flow", "deployment", "integration"]
BUCKETS: tuple[str, ...] = get_args(BucketName)
BYS: tuple[str, ...] = get_args(By)

HOUR = timedelta(hours=1)
#: The range read when ``from`` is not given: this long before ``to``.
DEFAULT_SPAN: dict[str, timedelta] = {"hour": timedelta(hours=48), "day": timedelta(days=30),
                                      "week": timedelta(weeks=12), "month": timedelta(days=365)}
#: The longest range each bucket may be asked for (beyond: 422), so a read stays a few thousand rows.
MAX_SPAN: dict[str, timedelta] = {"hour": timedelta(days=31), "day": timedelta(days=366),
                                  "week": timedelta(days=731), "month": timedelta(days=1827)}


@dataclass(frozen=True)
class Bucket:
    #: The bucket's first instant (UTC): an hour, a day, a week's Monday or a month's first day.
    start: datetime
    #: The operation, attribution value or integration it sums.
    key: str
    events: int
    cost_ucr: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class UsageReport:
    account_id: str
    bucket: str
    by: str
    #: The hours read: those starting in [start, end).
    start: datetime
    end: datetime
    buckets: list[Bucket]
    freshness: Freshness

    @property
    def total_ucr(self) -> int:
        return sum(b.cost_ucr for b in self.buckets)


@dataclass(frozen=True)
class AnalyticsReport:
    account_id: str
    figures: Analytics
    available_ucr: int
    monthly_limit_ucr: int | None
    freshness: Freshness


@dataclass(frozen=True)
class CostLine:
    """One part of a run's cost: an integration, a node, or an operation (a model or a tool)."""

    key: str
    events: int
    cost_ucr: int
    input_tokens: int = 0
    output_tokens: int = 0
    integration: str | None = None


@dataclass(frozen=True)
class ExecutionCost:
    account_id: str
    execution_id: str
    flow: str | None
    agent: str | None
    run: str | None
    member: str | None
    started_at: datetime
    ended_at: datetime
    events: int
    total_ucr: int
    by_integration: list[CostLine]
    by_node: list[CostLine]
    by_model: list[CostLine]
    by_tool: list[CostLine]
    freshness: Freshness


@dataclass(frozen=True)
class FlowRun:
    """One execution of a flow: when it started, its events and credits by integration."""

    execution_id: str
    started_at: datetime
    events: int
    by_integration: dict[str, int]

    @property
    def total_ucr(self) -> int:
        return sum(self.by_integration.values())


@dataclass(frozen=True)
class FlowCost:
    account_id: str
    flow: str
    start: datetime
    end: datetime
    events: int
    by_integration: dict[str, int]
    #: The flow's latest executions in the range, newest first (at most ``FLOW_RUNS``).
    runs: list[FlowRun]
    has_more: bool
    freshness: Freshness

    @property
    def total_ucr(self) -> int:
        return sum(self.by_integration.values())


#: How many of a flow's executions its summary lists.
FLOW_RUNS = 50
#: A flow summary's default range (before ``to``) and the longest one it may ask for.
FLOW_DEFAULT_SPAN = timedelta(days=30)
FLOW_MAX_SPAN = timedelta(days=366)


@contextlib.asynccontextmanager
async def snapshot(engine: AsyncEngine, account_id: str | None) -> AsyncIterator[AsyncConnection]:
    """A read-only REPEATABLE READ transaction (rows and freshness agree), on an account that exists
    (None: the caller checks)."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        async with conn.begin():
            if account_id is not None:
                found = (await conn.execute(text("SELECT 1 FROM accounts WHERE account_id = :a"),
                                            {"a": account_id})).first()
                if found is None:
                    raise UnknownAccount(account_id)
            yield conn


def _utc(when: datetime) -> datetime:
    """A timestamp in UTC (one without a zone is read as UTC)."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _floor_hour(when: datetime) -> datetime:
    return _utc(when).replace(minute=0, second=0, microsecond=0)


def _bounds(now: datetime, start: datetime | None, end: datetime | None,
            default: timedelta) -> tuple[datetime, datetime]:
    """``(until, since)``: ``end`` (default: the end of the current hour) and ``start`` (default:
    ``default`` before it), floored to the hour; 422 for a moment outside the years 1-9999 in UTC."""
    try:
        until = _floor_hour(end) if end is not None else _floor_hour(now) + HOUR
        return until, _floor_hour(start) if start is not None else until - default
    except OverflowError:  # e.g. to=0001-01-01T00:00Z with the default span before it
        raise InvalidRequest(
            "from and to must fall within the years 1 to 9999 (UTC), with room for the span") from None


def usage_range(now: datetime, bucket: str, start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """The hours a usage read covers: ``[start, end)`` floored to the hour; ``end`` defaults to the
    end of the current hour, ``start`` to ``DEFAULT_SPAN`` before ``end``; 422 when empty or longer
    than ``MAX_SPAN``."""
    if bucket not in BUCKETS:
        raise InvalidRequest(f"bucket must be one of {', '.join(BUCKETS)}, not {bucket!r}")
    until, since = _bounds(now, start, end, DEFAULT_SPAN[bucket])
    if since >= until:
        raise InvalidRequest(f"from ({since.isoformat()}) must be at least an hour before to ({until.isoformat()})")
    if until - since > MAX_SPAN[bucket]:
        raise InvalidRequest(f"a range of {bucket} buckets may span at most {MAX_SPAN[bucket].days} days;"
                             " ask for a larger bucket or a shorter range")
    return since, until


async def usage(ledger: Ledger, account_id: str, *, bucket: str = "day", by: str = "operation",
                start: datetime | None = None, end: datetime | None = None) -> UsageReport:
    """Usage summed per ``bucket`` and per ``by`` over the hours starting in [start, end)."""
    if by not in BYS:
        raise InvalidRequest(f"by must be one of {', '.join(BYS)}, not {by!r}")
    since, until = usage_range(ledger.clock.now(), bucket, start, end)
    # By operation and by integration read the account's own rows; the rest their dimension's.
    dim = "account" if by in ("operation", "integration") else by
    key = "operation" if dim == "account" else "key"
    async with snapshot(ledger.engine, account_id) as conn:
        rows = (await conn.execute(text(
            f"SELECT date_trunc(CAST(:b AS text), hour, 'UTC') AS start, {key} AS key, sum(events)::bigint AS events,"
            " sum(cost_ucr)::bigint AS cost_ucr, sum(input_tokens)::bigint AS input_tokens,"
            " sum(output_tokens)::bigint AS output_tokens"
            " FROM proj_usage_hourly WHERE account_id = :a AND dim = :d AND hour >= :f AND hour < :t"
            " GROUP BY 1, 2 ORDER BY 1, 2"), {"a": account_id, "d": dim, "b": bucket, "f": since, "t": until})).all()
        fresh = await freshness(conn, USAGE)
    buckets = [Bucket(_utc(r.start), r.key, r.events, r.cost_ucr, r.input_tokens, r.output_tokens) for r in rows]
    if by == "integration":
        buckets = by_integration(ledger.card, buckets)
    return UsageReport(account_id, bucket, by, since, until, buckets, fresh)


def by_integration(card: RateCard, buckets: list[Bucket]) -> list[Bucket]:
    """Operation buckets summed per integration (the card's), in the same bucket order."""
    sums: dict[tuple[datetime, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for b in buckets:
        s = sums[b.start, integration(card, b.key)]
        s[0] += b.events
        s[1] += b.cost_ucr
        s[2] += b.input_tokens
        s[3] += b.output_tokens
    return [Bucket(start, key, *s) for (start, key), s in sorted(sums.items())]


async def analytics(ledger: Ledger, account_id: str, days: int = 30) -> AnalyticsReport:
    """The analytics of the ``days`` (7, 14 or 30) whole UTC days ending today (``projections.analytics``).

    One snapshot on one connection: the inline available balance, budget and deployments, the
    account's daily sums of the hourly rollup since the window's or the month's start, whichever is
    earlier (31 days at most), and the window's most expensive requests through the
    (account_id, occurred_at) index: a few index reads, whatever the account's history.
    """
    if days not in WINDOWS:
        raise InvalidRequest(f"days must be one of {', '.join(map(str, WINDOWS))}, not {days}")
    now = ledger.clock.now()
    since, start = reads_since(now, days), window_start(now, days)
    until = midnight(now.astimezone(UTC).date() + timedelta(days=1))
    async with snapshot(ledger.engine, None) as conn:
        # The inline state, as ``Ledger.balance`` (available = balance - reserved) and
        # ``Ledger.deployments`` read it, in this snapshot: one connection for the whole read.
        account = (await conn.execute(text(
            "SELECT balance_ucr - reserved_ucr AS available_ucr, settings FROM accounts WHERE account_id = :a"),
            {"a": account_id})).first()
        if account is None:
            raise UnknownAccount(account_id)
        deployments = [DeploymentView(*r) for r in (await conn.execute(text(
            "SELECT deployment_id, instance_type, status, hourly_ucr, hours_charged, credits_ucr, paused_reason,"
            " started_at FROM deployments WHERE account_id = :a ORDER BY started_at DESC, deployment_id"),
            {"a": account_id})).all()]
        rows = (await conn.execute(text(
            "SELECT (hour AT TIME ZONE 'UTC')::date AS day, dim, key, operation, sum(events)::bigint AS events,"
            " sum(cost_ucr)::bigint AS cost_ucr, sum(input_tokens)::bigint AS input_tokens,"
            " sum(output_tokens)::bigint AS output_tokens"
            " FROM proj_usage_hourly WHERE account_id = :a AND dim IN ('account', 'deployment')"
            " AND hour >= :f AND hour < :t GROUP BY 1, 2, 3, 4"), {"a": account_id, "f": since, "t": until})).all()
        # Hourly deployment charges are not requests.
        top = (await conn.execute(text(
            "SELECT event_id AS entry_id, COALESCE(execution_id, event_id::text) AS execution_id, occurred_at,"
            " operation, cost_ucr, input_tokens, output_tokens, flow, agent, deployment_id"
            " FROM proj_executions WHERE account_id = :a AND occurred_at >= :f AND occurred_at < :t"
            " AND hour_index IS NULL ORDER BY cost_ucr DESC, occurred_at DESC LIMIT :l"),
            {"a": account_id, "f": start, "t": until, "l": TOP_REQUESTS})).all()
        fresh = await freshness(conn, USAGE, HISTORY)
    # Positional rows: the columns are selected in the fields' order (a mapping per row cost more than the SQL).
    budget = row_map.budget(account.settings)
    figures = analyse(
        card=ledger.card, now=now, days=days, rows=[DayRow(*r) for r in rows],
        requests=[Request(*r) for r in top], deployments=deployments,
        available_ucr=account.available_ucr, monthly_limit_ucr=budget.monthly_limit_ucr)
    return AnalyticsReport(account_id, figures, account.available_ucr, budget.monthly_limit_ucr, fresh)


async def execution(ledger: Ledger, account_id: str, execution_id: str) -> ExecutionCost:
    """One run's cost: every usage event attributed to ``execution_id`` (or the entry with that id,
    for usage that named no execution), by integration, node, model and tool. 404 when none."""
    async with snapshot(ledger.engine, account_id) as conn:
        rows = (await conn.execute(text(
            "SELECT occurred_at, operation, cost_ucr, input_tokens, output_tokens, flow, agent, run, member, node"
            " FROM proj_executions WHERE account_id = :a AND execution_id = :x ORDER BY version"),
            {"a": account_id, "x": execution_id})).all()
        if not rows and (entry := _uuid(execution_id)) is not None:
            rows = (await conn.execute(text(
                "SELECT occurred_at, operation, cost_ucr, input_tokens, output_tokens, flow, agent, run, member, node"
                " FROM proj_executions WHERE account_id = :a AND event_id = :e AND execution_id IS NULL"),
                {"a": account_id, "e": entry})).all()
        fresh = await freshness(conn, HISTORY)
    if not rows:
        raise NotFound(f"no execution {execution_id!r} in account {account_id!r}"
                       + (f" (the history is {fresh.lag_ms} ms behind)" if fresh.lag_ms else ""))
    card = ledger.card

    def lines(key_of: str) -> list[CostLine]:
        sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for r in rows:
            name = integration(card, r.operation) if key_of == "integration" else getattr(r, key_of) or ""
            s = sums[name]
            s[0] += 1
            s[1] += r.cost_ucr
            s[2] += r.input_tokens
            s[3] += r.output_tokens
        found = [CostLine(k, e, c, i, o, integration(card, k) if key_of == "operation" else None)
                 for k, (e, c, i, o) in sums.items()]
        return sorted(found, key=lambda x: (-x.cost_ucr, x.key))

    def first(name: str) -> str | None:
        return next((getattr(r, name) for r in rows if getattr(r, name) is not None), None)

    operations = lines("operation")
    return ExecutionCost(
        account_id=account_id, execution_id=execution_id, flow=first("flow"), agent=first("agent"),
        run=first("run"), member=first("member"), started_at=min(r.occurred_at for r in rows),
        ended_at=max(r.occurred_at for r in rows), events=len(rows), total_ucr=sum(r.cost_ucr for r in rows),
        by_integration=lines("integration"), by_node=[n for n in lines("node") if n.key],
        by_model=[o for o in operations if is_model(card, o.key)],
        by_tool=[o for o in operations if not is_model(card, o.key)], freshness=fresh)


def _uuid(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None


async def flow(ledger: Ledger, account_id: str, flow_name: str, *, start: datetime | None = None,
               end: datetime | None = None) -> FlowCost:
    """A flow's cost over the hours starting in [start, end) (default: the last 30 days; at most
    366): its credits by integration from the hourly rollup, and its latest executions, each with
    its credits by integration. A flow nothing was recorded under reads as zero."""
    until, since = _bounds(ledger.clock.now(), start, end, FLOW_DEFAULT_SPAN)
    if since >= until or until - since > FLOW_MAX_SPAN:
        raise InvalidRequest(f"from must be before to, at most {FLOW_MAX_SPAN.days} days apart")
    card = ledger.card
    async with snapshot(ledger.engine, account_id) as conn:
        totals = (await conn.execute(text(
            "SELECT operation, sum(events)::bigint AS events, sum(cost_ucr)::bigint AS cost_ucr"
            " FROM proj_usage_hourly WHERE account_id = :a AND dim = 'flow' AND key = :k"
            " AND hour >= :f AND hour < :t GROUP BY operation"),
            {"a": account_id, "k": flow_name, "f": since, "t": until})).all()
        # The newest executions first, through the (account_id, occurred_at) index.
        runs = (await conn.execute(text(
            "SELECT COALESCE(execution_id, event_id::text) AS run, operation, min(occurred_at) AS started_at,"
            " count(*) AS events, sum(cost_ucr)::bigint AS cost_ucr FROM proj_executions"
            " WHERE account_id = :a AND flow = :k AND occurred_at >= :f AND occurred_at < :t"
            " GROUP BY 1, 2"), {"a": account_id, "k": flow_name, "f": since, "t": until})).all()
        fresh = await freshness(conn, USAGE, HISTORY)
    overall: dict[str, int] = defaultdict(int)
    for r in totals:
        overall[integration(card, r.operation)] += r.cost_ucr
    started: dict[str, datetime] = {}
    events: dict[str, int] = defaultdict(int)
    parts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in runs:
        started[r.run] = min(started.get(r.run, r.started_at), r.started_at)
        events[r.run] += r.events
        parts[r.run][integration(card, r.operation)] += r.cost_ucr
    newest = sorted(started, key=lambda run: (started[run], run), reverse=True)
    return FlowCost(account_id, flow_name, since, until, sum(r.events for r in totals), dict(overall),
                    [FlowRun(run, started[run], events[run], dict(parts[run])) for run in newest[:FLOW_RUNS]],
                    len(newest) > FLOW_RUNS, fresh)
