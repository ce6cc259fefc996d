"""What the service's reads return, and the pure rules behind them: balances and their run-out
forecast, estimates, deployments, accounts and the explanation of one entry (its rounding and the
limits that applied). No I/O: ``ledger.service`` reads the rows and builds these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from ledger.clock import day_key
from ledger.events import BudgetSet, Event, LimitSet, UsageMetered
from ledger.money import format_credits
from ledger.rates import Price


@dataclass(frozen=True)
class Balance:
    account_id: str
    plan: str
    status: str
    balance_ucr: int
    available_ucr: int
    reserved_ucr: int
    debt_ucr: int
    by_source: Mapping[str, int]
    monthly_allowance_ucr: int
    resets_at: datetime | None
    version: int
    recent: Sequence[Event]
    #: ``recent`` with each entry's version.
    entries: Sequence[tuple[int, Event]] = ()
    #: When the available balance runs out at the recent burn rate (None: idle, or years away).
    runout_at: datetime | None = None
    #: The burn rate behind ``runout_at`` (with ``forecast``): what was spent over ``burn_window``.
    burned_ucr: int = 0
    burn_window: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class Estimate:
    price: Price
    sufficient: bool
    remaining_ucr: int
    reason: str | None


@dataclass(frozen=True)
class DeploymentView:
    deployment_id: str
    instance_type: str
    status: str
    hourly_ucr: int
    hours_charged: int
    credits_ucr: int
    paused_reason: str | None
    started_at: datetime


@dataclass(frozen=True)
class Explanation:
    """Why an entry cost what it did (``Ledger.explain``)."""

    version: int
    entry: Event
    #: The entry's price on the rate-card version it records (None: not priced usage, or that
    #: version no longer prices its operation).
    price: Price | None
    rounding: str
    #: The budget and limits in force when it was recorded, and whether each could refuse it.
    limits_checked: list[dict[str, Any]]


@dataclass(frozen=True)
class Account:
    account_id: str
    name: str
    plan: str
    status: str
    opened_at: datetime
    settings: Mapping[str, Any]


@dataclass(frozen=True)
class AccountSummary:
    """One line of the operator's list of accounts: exact amounts from the inline state."""

    account_id: str
    name: str
    plan: str
    status: str
    opened_at: datetime
    balance_ucr: int
    reserved_ucr: int
    debt_ucr: int


#: The burn rate behind the run-out forecast is the usage of this window.
BURN_WINDOW = timedelta(days=7)

#: Further than this, "runs out" means "does not": no date is given.
FORECAST_HORIZON = timedelta(days=3650)


def burn_window(now: datetime) -> tuple[datetime, list[str]]:
    """Where the forecast's window starts, and the account day counters that cover it exactly:
    the ``BURN_WINDOW`` before ``now`` widened to whole UTC days (7 to 8 days of usage)."""
    start = datetime.combine((now - BURN_WINDOW).astimezone(UTC).date(), time(), UTC)
    days = (now.astimezone(UTC).date() - start.date()).days
    return start, [day_key(start + timedelta(days=i)) for i in range(days + 1)]


def runout_at(now: datetime, available_ucr: int, burned_ucr: int,
              window: timedelta = BURN_WINDOW) -> datetime | None:
    """When ``available_ucr`` is used up at ``burned_ucr`` per ``window`` (exact integer maths)."""
    if burned_ucr <= 0 or available_ucr <= 0 or window <= timedelta(0):
        return None
    window_us = window // timedelta(microseconds=1)
    # Compare in integers first: a tiny burn against a large balance must not overflow timedelta.
    if available_ucr * window_us >= burned_ucr * (FORECAST_HORIZON // timedelta(microseconds=1)):
        return None
    return now + timedelta(microseconds=available_ucr * window_us // burned_ucr)


def rounding(e: UsageMetered, minimum_ucr: int | None) -> str:
    """How the entry's exact cost became the µcr it was charged."""
    exact = e.exact_cost
    if minimum_ucr and e.cost_ucr == minimum_ucr:
        return f"exact {exact} µcr is below the session minimum: charged the minimum {minimum_ucr} µcr"
    if "." in exact or "…" in exact:
        return f"exact {exact} µcr rounded up to {e.cost_ucr} µcr (charges never round down)"
    return f"exact {exact} µcr: no rounding needed"


def limits_in_force(e: UsageMetered, rules: Sequence[Event]) -> list[dict[str, Any]]:
    """The budget and agent/member limits that applied to ``e``, given the account's
    ``BudgetSet``/``LimitSet`` events before it in order (the latest setting of each wins)."""
    checked: list[dict[str, Any]] = [{"rule": "available_balance", "applies": e.gated,
                                      "note": "gated: refused unless the available balance covers the cost"
                                      if e.gated else "metered: never refused; a shortfall becomes debt"}]
    budget: BudgetSet | None = None
    limits: dict[tuple[str, str], LimitSet] = {}
    for r in rules:
        if isinstance(r, BudgetSet):
            budget = r
        elif isinstance(r, LimitSet):
            limits[(r.scope, r.subject)] = r
    if budget is not None and budget.monthly_limit_ucr is not None:
        checked.append({"rule": "monthly_budget", "limit": format_credits(budget.monthly_limit_ucr),
                        "limit_ucr": budget.monthly_limit_ucr, "hard_stop": budget.hard_stop,
                        "applies": e.gated and budget.hard_stop})
    for scope, subject in (("agent", e.attribution.agent), ("member", e.attribution.member)):
        lim = limits.get((scope, subject or ""))
        if subject and lim is not None:
            for period in ("per_run", "per_day", "per_month"):
                value = getattr(lim, f"{period}_ucr")
                if value is not None:
                    checked.append({"rule": f"{scope}_limit", "subject": subject, "period": period,
                                    "limit": format_credits(value), "limit_ucr": value, "applies": e.gated})
    return checked
