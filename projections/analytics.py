"""Usage analytics from rows already read: pure functions, no I/O (``projections/queries/usage.py``
reads the rows).

Every figure is UTC and every amount integer µcr. The definitions:

- window: the ``days`` whole UTC days ending with today (today so far included); ``series`` has
  one point per day of it, days without usage included (zero).
- ``this_period``: spend from the first of the current calendar month to now.
- ``daily_average``: the window's spend // ``days`` (integer division: rounded down to the µcr).
- ``projected_month_end``: ``this_period`` + ``daily_average`` × the days of the month after today.
- ``runout_at``: when the available balance is used up at the window's burn rate (its spend over
  the time from the window's start to now; ``ledger.views.runout_at``); None when idle.
- ``by_model`` / ``by_deployment``: the window's spend per model operation (the card's ``model``
  flag) / per deployment, the most expensive first.
- ``top_requests``: the window's most expensive usage events; hourly deployment charges are not
  requests (the query leaves them out).
- ``suggestions``: the rules at ``suggestions`` below.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from typing import Any
from uuid import UUID

from ledger.money import ceil_ucr, credits_to_exact_ucr, format_credits
from ledger.rates import RateCard, integration_of, price, slug_integration
from ledger.views import DeploymentView, runout_at

#: The windows the analytics read offers.
WINDOWS = (7, 14, 30)
#: How many of the most expensive requests it lists.
TOP_REQUESTS = 10
#: An average month's hours (8,760 / 12): what a deployment's hourly price costs a month.
HOURS_PER_MONTH = 730
#: A running deployment is judged (idle, over-provisioned) only after this long.
JUDGE_AFTER = timedelta(hours=24)
#: Over-provisioned: fewer requests than this per hour it was charged in the window.
LOW_USE_REQUESTS_PER_HOUR = 1
#: A short prompt: fewer input tokens than this on average per request.
SHORT_PROMPT_TOKENS = 1_000
#: A model is judged for a cheaper one only with at least this many requests in the window.
MIN_MODEL_REQUESTS = 10


@dataclass(frozen=True)
class DayRow:
    """One day's usage of one operation, for the account (``dim`` 'account', ``key`` '') or one
    attribution value (``dim`` 'deployment', ``key`` its id ...)."""

    day: date
    dim: str
    key: str
    operation: str
    events: int
    cost_ucr: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Request:
    """One usage event, as the top-requests list shows it."""

    entry_id: UUID
    execution_id: str
    occurred_at: datetime
    operation: str
    cost_ucr: int
    input_tokens: int
    output_tokens: int
    flow: str | None
    agent: str | None
    deployment_id: str | None


@dataclass(frozen=True)
class DayPoint:
    day: date
    cost_ucr: int
    events: int


@dataclass(frozen=True)
class Share:
    """One model's or deployment's part of the window's spend."""

    key: str
    cost_ucr: int
    events: int
    input_tokens: int
    output_tokens: int
    #: A model's integration; a deployment's instance type (None when the deployment is unknown).
    kind: str | None = None
    #: A deployment's status (None for a model, or an unknown deployment).
    status: str | None = None


@dataclass(frozen=True)
class Suggestion:
    #: ``idle_deployment``, ``over_provisioned``, ``cheaper_model`` or ``budget``.
    kind: str
    message: str
    #: The numbers behind it; each amount both as ``<name>_ucr`` and ``<name>`` (credits).
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Analytics:
    days: int
    now: datetime
    window_start: datetime
    series: list[DayPoint]
    window_total_ucr: int
    this_period_ucr: int
    daily_average_ucr: int
    projected_month_end_ucr: int
    by_model: list[Share]
    by_deployment: list[Share]
    top_requests: list[Request]
    runout_at: datetime | None
    suggestions: list[Suggestion]


# ---- time ----------------------------------------------------------------------------------------


def midnight(d: date) -> datetime:
    return datetime.combine(d, time(), UTC)


def window_start(now: datetime, days: int) -> datetime:
    """Midnight UTC of the first of the ``days`` whole days ending with today."""
    return midnight(now.astimezone(UTC).date() - timedelta(days=days - 1))


def month_start(now: datetime) -> datetime:
    return midnight(now.astimezone(UTC).date().replace(day=1))


def days_in_month(d: date) -> int:
    following = (d.replace(day=28) + timedelta(days=4)).replace(day=1)
    return (following - timedelta(days=1)).day


def reads_since(now: datetime, days: int) -> datetime:
    """Where the rows an analytics read needs begin: the window's start or the month's, the earlier."""
    return min(window_start(now, days), month_start(now))


# ---- the card ------------------------------------------------------------------------------------


def integration(card: RateCard, operation: str) -> str:
    """The integration usage of ``operation`` is reported under (``ledger.rates.integration_of``);
    an operation no longer on the card keeps its slug's first word, as the rule would name it."""
    op = card.operations.get(operation)
    return integration_of(op) if op is not None else slug_integration(operation)


def is_model(card: RateCard, operation: str) -> bool:
    op = card.operations.get(operation)
    return op.is_model if op is not None else False


def hourly_ucr(card: RateCard, instance_type: str) -> int | None:
    """What one hour of an instance type costs on ``card`` (None: not an instance type on it)."""
    op = card.operations.get(instance_type)
    if op is None or op.kind != "instance":
        return None
    return price(card, instance_type, {op.unit: 1}).amount_ucr


def tokens_cost_ucr(card: RateCard, operation: str, input_tokens: int, output_tokens: int) -> int | None:
    """What ``operation`` would charge for these tokens, summed exactly and rounded up once
    (per-request minimums left out); None when it does not price every dimension used."""
    op = card.operations.get(operation)
    if op is None:
        return None
    total = Fraction(0)
    for dim, quantity in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
        if quantity == 0:
            continue
        rate = op.rates.get(dim)
        if rate is None:
            return None
        total += credits_to_exact_ucr(rate.credits) * quantity / rate.per
    return ceil_ucr(total)


# ---- the figures ---------------------------------------------------------------------------------


def series(rows: Iterable[DayRow], start: date, days: int) -> list[DayPoint]:
    """One point per day from ``start``, zero where nothing was used (account rows only)."""
    cost: dict[date, int] = defaultdict(int)
    events: dict[date, int] = defaultdict(int)
    for r in rows:
        if r.dim == "account":
            cost[r.day] += r.cost_ucr
            events[r.day] += r.events
    return [DayPoint(d, cost[d], events[d]) for d in (start + timedelta(days=i) for i in range(days))]


def projected_month_end(now: datetime, this_period_ucr: int, daily_average_ucr: int) -> int:
    today = now.astimezone(UTC).date()
    return this_period_ucr + daily_average_ucr * (days_in_month(today) - today.day)


def by_model(card: RateCard, rows: Iterable[DayRow]) -> list[Share]:
    """Account rows of model operations, summed per operation, the most expensive first."""
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in rows:
        if r.dim == "account" and is_model(card, r.operation):
            s = sums[r.operation]
            s[0] += r.cost_ucr
            s[1] += r.events
            s[2] += r.input_tokens
            s[3] += r.output_tokens
    shares = [Share(k, c, e, i, o, kind=integration(card, k)) for k, (c, e, i, o) in sums.items()]
    return sorted(shares, key=lambda s: (-s.cost_ucr, s.key))


def by_deployment(rows: Iterable[DayRow], deployments: Sequence[DeploymentView]) -> list[Share]:
    """Deployment rows (its hourly charges and the usage attributed to it) per deployment."""
    known = {d.deployment_id: d for d in deployments}
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in rows:
        if r.dim == "deployment":
            s = sums[r.key]
            s[0] += r.cost_ucr
            s[1] += r.events
            s[2] += r.input_tokens
            s[3] += r.output_tokens
    shares = []
    for k, (c, e, i, o) in sums.items():
        d = known.get(k)
        shares.append(Share(k, c, e, i, o, kind=d.instance_type if d else None, status=d.status if d else None))
    return sorted(shares, key=lambda s: (-s.cost_ucr, s.key))


def money(name: str, ucr: int) -> dict[str, Any]:
    """An amount in both forms, for a suggestion's figures."""
    return {f"{name}_ucr": ucr, name: format_credits(ucr)}


def analyse(*, card: RateCard, now: datetime, days: int, rows: Sequence[DayRow], requests: Sequence[Request],
            deployments: Sequence[DeploymentView], available_ucr: int, monthly_limit_ucr: int | None) -> Analytics:
    """Every analytics figure from the rows read since ``reads_since(now, days)``."""
    start = window_start(now, days)
    in_window = [r for r in rows if r.day >= start.date()]
    points = series(in_window, start.date(), days)
    total = sum(p.cost_ucr for p in points)
    this_period = sum(r.cost_ucr for r in rows if r.dim == "account" and r.day >= month_start(now).date())
    average = total // days
    projected = projected_month_end(now, this_period, average)
    figures = Analytics(
        days=days, now=now, window_start=start, series=points, window_total_ucr=total,
        this_period_ucr=this_period, daily_average_ucr=average, projected_month_end_ucr=projected,
        by_model=by_model(card, in_window), by_deployment=by_deployment(in_window, deployments),
        top_requests=sorted(requests, key=lambda q: (q.cost_ucr, q.occurred_at), reverse=True)[:TOP_REQUESTS],
        runout_at=runout_at(now, available_ucr, total, now - start), suggestions=[])
    figures.suggestions.extend(suggestions(card, figures, in_window, deployments, monthly_limit_ucr))
    return figures


# ---- suggestions ---------------------------------------------------------------------------------


def suggestions(card: RateCard, a: Analytics, rows: Sequence[DayRow], deployments: Sequence[DeploymentView],
                monthly_limit_ucr: int | None) -> list[Suggestion]:
    """What the account could change, by these rules (``rows``: the window's):

    - ``idle_deployment``: a running deployment, started at least ``JUDGE_AFTER`` ago, with no
      usage attributed to it in the window besides its own hourly charges. Saving: its hourly
      price × ``HOURS_PER_MONTH``.
    - ``over_provisioned``: a running deployment, started at least ``JUDGE_AFTER`` ago, with some
      usage attributed to it but fewer than ``LOW_USE_REQUESTS_PER_HOUR`` requests per hour it was
      charged in the window, whose instance type has a cheaper one on the card: the next cheaper
      (the dearest of the cheaper ones). Saving: the hourly difference × ``HOURS_PER_MONTH``.
    - ``cheaper_model``: a model with at least ``MIN_MODEL_REQUESTS`` requests in the window
      averaging fewer than ``SHORT_PROMPT_TOKENS`` input tokens, when another model of the same
      integration prices the window's tokens lower (``tokens_cost_ucr``, both estimated alike):
      the cheapest such. Saving: the difference of the two estimates.
    - ``budget``: a monthly budget limit and ``projected_month_end`` >= it; ``reached_on`` is the
      day the daily average reaches it (today when already reached).
    """
    found = [*_deployments(card, a, rows, deployments), *_models(card, a)]
    if monthly_limit_ucr is not None:
        found.extend(_budget(a, monthly_limit_ucr))
    return found


def _deployments(card: RateCard, a: Analytics, rows: Sequence[DayRow],
                 deployments: Sequence[DeploymentView]) -> list[Suggestion]:
    requests: dict[str, int] = defaultdict(int)
    hours: dict[str, int] = defaultdict(int)
    for r in rows:
        if r.dim != "deployment":
            continue
        op = card.operations.get(r.operation)
        if op is not None and op.kind == "instance":
            hours[r.key] += r.events
        else:
            requests[r.key] += r.events
    out = []
    for d in deployments:
        if d.status != "running" or a.now - d.started_at < JUDGE_AFTER:
            continue
        dep = {"deployment_id": d.deployment_id, "instance_type": d.instance_type,
               "requests": requests[d.deployment_id], "hours_charged": hours[d.deployment_id], "days": a.days}
        if requests[d.deployment_id] == 0:
            monthly = d.hourly_ucr * HOURS_PER_MONTH
            out.append(Suggestion("idle_deployment", (
                f"Deployment {d.deployment_id} ({d.instance_type}) has run for the last {a.days} days with no"
                f" usage attributed to it; stopping it saves about {format_credits(monthly)} credits a month."),
                {**dep, **money("hourly", d.hourly_ucr), **money("monthly_saving", monthly)}))
            continue
        if requests[d.deployment_id] >= LOW_USE_REQUESTS_PER_HOUR * max(hours[d.deployment_id], 1):
            continue
        cheaper = _next_cheaper_instance(card, d.hourly_ucr)
        if cheaper is None:
            continue
        slug, cheaper_hourly = cheaper
        monthly = (d.hourly_ucr - cheaper_hourly) * HOURS_PER_MONTH
        out.append(Suggestion("over_provisioned", (
            f"Deployment {d.deployment_id} ({d.instance_type}) served {requests[d.deployment_id]} requests in"
            f" {hours[d.deployment_id]} charged hours; on {slug} it would cost about {format_credits(monthly)}"
            " credits a month less."),
            {**dep, "suggested_instance_type": slug, **money("hourly", d.hourly_ucr),
             **money("suggested_hourly", cheaper_hourly), **money("monthly_saving", monthly)}))
    return out


def _next_cheaper_instance(card: RateCard, hourly: int) -> tuple[str, int] | None:
    cheaper = [(h, slug) for slug in card.operations if (h := hourly_ucr(card, slug)) is not None and h < hourly]
    if not cheaper:
        return None
    h, slug = max(cheaper, key=lambda c: (c[0], c[1]))
    return slug, h


def _models(card: RateCard, a: Analytics) -> list[Suggestion]:
    out = []
    for m in a.by_model:
        if m.events < MIN_MODEL_REQUESTS or m.input_tokens // m.events >= SHORT_PROMPT_TOKENS:
            continue
        # Both sides estimated alike (the card's rates on the window's tokens), so per-request
        # minimums and rounding never make a model look cheaper than it is.
        own = tokens_cost_ucr(card, m.key, m.input_tokens, m.output_tokens)
        if own is None:
            continue
        options = []
        for slug, op in card.operations.items():
            if slug == m.key or not op.is_model or integration_of(op) != m.kind:
                continue
            cost = tokens_cost_ucr(card, slug, m.input_tokens, m.output_tokens)
            if cost is not None and cost < own:
                options.append((cost, slug))
        if not options:
            continue
        cost, slug = min(options)
        saving = own - cost
        out.append(Suggestion("cheaper_model", (
            f"Requests to {m.key} averaged {m.input_tokens // m.events} input tokens over the last {a.days}"
            f" days; the same tokens on {slug} would cost about {format_credits(cost)} credits instead of"
            f" {format_credits(own)} (saving about {format_credits(saving)})."),
            {"model": m.key, "suggested_model": slug, "requests": m.events,
             "average_input_tokens": m.input_tokens // m.events, "days": a.days, **money("window_cost", m.cost_ucr),
             **money("estimated_cost", own), **money("suggested_cost", cost), **money("estimated_saving", saving)}))
    return out


def _budget(a: Analytics, limit: int) -> list[Suggestion]:
    if a.projected_month_end_ucr < limit:
        return []
    today = a.now.astimezone(UTC).date()
    if a.this_period_ucr >= limit:
        reached = today
    else:  # projected >= limit > this period, so the daily average is positive
        reached = today + timedelta(days=-((a.this_period_ucr - limit) // a.daily_average_ucr))
    return [Suggestion("budget", (
        f"At {format_credits(a.daily_average_ucr)} credits a day, this month's spend reaches the monthly"
        f" budget of {format_credits(limit)} credits on {reached.isoformat()}"
        f" (projected {format_credits(a.projected_month_end_ucr)})."),
        {"reached_on": reached.isoformat(), **money("monthly_limit", limit),
         **money("projected_month_end", a.projected_month_end_ucr), **money("this_period", a.this_period_ucr),
         **money("daily_average", a.daily_average_ucr)})]

