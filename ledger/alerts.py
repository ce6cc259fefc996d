"""Which alerts are due for an account: budget thresholds, agent/member limits, low balance.

The conditions are pure functions of the account state. Each alert has a key naming its kind,
subject, threshold and period (``alert:budget:account::M2026-11:80``): raising it is a command
keyed by that name, so it fires once per period and threshold however often it is checked, and
again next period.

The conditions read only a sliver of the state (available balance, budget, limits, a few spend
counters, the running deployments' hourly cost): an ``AlertView``. Checks do not load a command's
full snapshot: ``ledger.alert_views`` loads views at the edge, and the writer re-checks each alert
under the account's lock (``facts`` on the full state) before raising it. Nothing here does I/O:
``decide`` uses these rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

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
