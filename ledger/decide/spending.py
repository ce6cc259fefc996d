"""Usage: pricing it, the gates a charge must pass (balance, budget, limits), the spend range,
and the debit that draws grants in burn order."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from ledger import commands as c
from ledger.clock import day_key, month_key
from ledger.decide.context import Builder
from ledger.decide.credits import expire_due
from ledger.errors import InvalidRequest, OutOfRange, PaymentRequired
from ledger.events import Attribution, UsageMetered
from ledger.grants import plan_draws
from ledger.money import MAX_SPEND_UCR, format_credits, fraction_to_decimal_str
from ledger.rates import Price, RateCard, normalize_quantities, price
from ledger.state import AccountState, spend_keys

#: How late usage may be reported: a backfill after an outage, not a rewrite of closed months.
MAX_BACKDATE = timedelta(days=90)


def check_spend(state: AccountState, cost_ucr: int, attribution: Attribution, now: datetime,
                card: RateCard) -> None:
    """Raise ``PaymentRequired`` unless the account may spend ``cost_ucr`` now."""

    def refuse(reason: str, remaining: int) -> PaymentRequired:
        return PaymentRequired(required_ucr=cost_ucr, remaining_ucr=max(remaining, 0), reason=reason,
                               upgrade_url=card.upgrade_url)

    if cost_ucr > state.available_ucr:
        raise refuse("insufficient_balance", state.available_ucr)
    budget = state.budget
    if budget.hard_stop and budget.monthly_limit_ucr is not None:
        # Held reservations count as spent: settling them is never refused, so the hard stop
        # must be enforced when the credits are held, not when the run finishes.
        spent = state.counter(("account", "", month_key(now))) + state.reserved_ucr
        if spent + cost_ucr > budget.monthly_limit_ucr:
            raise refuse("budget_hard_limit", budget.monthly_limit_ucr - spent)
    for scope, subject in (("agent", attribution.agent), ("member", attribution.member)):
        lim = state.limits.get((scope, subject)) if subject else None
        if lim is None or subject is None:
            continue
        checks = [(lim.per_day_ucr, day_key(now)), (lim.per_month_ucr, month_key(now))]
        if attribution.run:
            checks.append((lim.per_run_ucr, f"R{attribution.run}"))
        for cap, period in checks:
            if cap is None:
                continue
            spent = state.counter((scope, subject, period))
            if spent + cost_ucr > cap:
                raise refuse(f"{scope}_limit", cap - spent)


def _check_spend_range(state: AccountState, cost_ucr: int, attribution: Attribution, when: datetime,
                       deployment_id: str | None) -> None:
    """Refuse a debit that would take a spend counter it adds to, or its deployment's total, past
    ``MAX_SPEND_UCR``: those are BIGINT columns the store increments.

    Every counter is a part of what the account ever spent, so while that plus the debit stays
    within the bound none can pass it and none is read; past it each counter is checked (the
    store loads them when asked: ``CountersNotLoaded``)."""
    if state.spent_ucr + cost_ucr > MAX_SPEND_UCR:
        for key in spend_keys(attribution, when):
            if state.counter(key) + cost_ucr > MAX_SPEND_UCR:
                raise OutOfRange(f"spend counter {'/'.join(k for k in key if k)} would pass"
                                 f" {format_credits(MAX_SPEND_UCR)} credits, the most one holds")
    d = state.deployments.get(deployment_id) if deployment_id is not None else None
    if d is not None and d.credits_ucr + cost_ucr > MAX_SPEND_UCR:
        raise OutOfRange(f"deployment {d.deployment_id!r} would pass {format_credits(MAX_SPEND_UCR)} credits in all")


def price_usage(card: RateCard, operation: str, quantity: int | None,
                quantities: Mapping[str, int] | None) -> Price:
    op = card.operation(operation)
    return price(card, operation, normalize_quantities(op, quantity, quantities))


def debit(b: Builder, p: Price, *, attribution: Attribution, gated: bool,
          occurred_at: datetime | None = None, **extra: Any) -> UsageMetered:
    """Record priced usage: draw grants in burn order, the unpaid rest becomes debt."""
    _check_spend_range(b.state, p.amount_ucr, attribution, occurred_at or b.ctx.now, extra.get("deployment_id"))
    draws, unpaid = plan_draws(b.state.grants.values(), p.amount_ucr)
    if gated and unpaid:
        raise AssertionError("gated debit reached the grants without cover")  # checked before
    return b.emit(
        UsageMetered, amount_ucr=-p.amount_ucr, occurred_at=occurred_at,
        operation=p.operation, quantities={ln.dimension: ln.quantity for ln in p.lines},
        attribution=attribution, cost_ucr=p.amount_ucr, exact_cost=fraction_to_decimal_str(p.exact_ucr),
        rate_card_version=p.rate_card_version, gated=gated, draws=draws, debt_added_ucr=unpaid, **extra,
    )


def _charge(b: Builder, cmd: c.Charge) -> None:
    p = price_usage(b.ctx.card, cmd.operation, cmd.quantity, cmd.quantities)
    expire_due(b)
    check_spend(b.state, p.amount_ucr, cmd.attribution, b.ctx.now, b.ctx.card)
    debit(b, p, attribution=cmd.attribution, gated=True)


def _meter(b: Builder, cmd: c.Meter) -> None:
    p = price_usage(b.ctx.card, cmd.operation, cmd.quantity, cmd.quantities)
    if cmd.occurred_at is not None and cmd.occurred_at > b.ctx.now + timedelta(minutes=5):
        raise InvalidRequest("occurred_at is in the future")
    if cmd.occurred_at is not None and cmd.occurred_at < b.ctx.now - MAX_BACKDATE:
        raise InvalidRequest(f"occurred_at is more than {MAX_BACKDATE.days} days in the past")
    expire_due(b)
    debit(b, p, attribution=cmd.attribution, gated=False, occurred_at=cmd.occurred_at)


#: The commands decided here.
HANDLERS: dict[type[c.Command], Callable[[Builder, Any], None]] = {
    c.Charge: _charge,
    c.Meter: _meter,
}
