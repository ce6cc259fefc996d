"""Plans paid through Stripe: the subscription's state, and each paid invoice's allowance.

A paid invoice (``GrantPlanAllowance``) moves the account to its plan, expires the allowance
still live (no rollover; purchased, promotional and refund credits are untouched) and grants the
plan's monthly credits until the invoice period's end. While a subscription is live the
calendar's monthly allowance (``GrantAllowance``, the scheduler's job) is refused: one source
of allowance at a time. A subscription that ended puts the account back on the card's default
plan, whose calendar cycles then resume.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger import commands as c
from ledger.clock import cycle_at
from ledger.decide.context import Builder
from ledger.decide.credits import expire_due, settle_debt
from ledger.errors import InvalidRequest, InvalidState
from ledger.events import AllowanceGranted, GrantExpired, PlanChanged, SubscriptionChanged
from ledger.money import credits_to_exact_ucr, floor_ucr
from ledger.payments import ENDED


def _subscription(b: Builder, cmd: c.RecordSubscription) -> None:
    card = b.ctx.card
    card.plan(cmd.plan)  # an unknown plan is a 422
    sub = b.state.subscription
    if sub is not None and sub.stripe_subscription == cmd.stripe_subscription:
        if not sub.live:
            return  # ended is final at Stripe: a late update of it changes nothing
        if (sub.plan, sub.status, sub.current_period_end, sub.cancel_at_period_end) == (
                cmd.plan, cmd.status, cmd.current_period_end, cmd.cancel_at_period_end):
            return  # nothing new (another event about the same state)
    elif sub is not None and sub.live and cmd.status in ENDED:
        return  # an older subscription ending after a newer one took over: the plan stays
    b.emit(SubscriptionChanged, stripe_subscription=cmd.stripe_subscription, plan=cmd.plan, status=cmd.status,
           current_period_end=cmd.current_period_end, cancel_at_period_end=cmd.cancel_at_period_end)
    if cmd.status in ENDED and b.state.plan != card.default_plan:
        b.emit(PlanChanged, old_plan=b.state.plan, new_plan=card.plan(card.default_plan).id)


def _plan_allowance(b: Builder, cmd: c.GrantPlanAllowance) -> None:
    plan = b.ctx.card.plan(cmd.plan)
    if cmd.period_end <= cmd.period_start:
        raise InvalidRequest("period_end must be after period_start")
    sub = b.state.subscription
    if sub is not None and sub.last_invoice == cmd.invoice_id:
        return  # this invoice's allowance was granted (another key, the same invoice)
    if sub is not None and sub.stripe_subscription == cmd.stripe_subscription and not sub.live:
        raise InvalidState(f"subscription {cmd.stripe_subscription!r} ended ({sub.status}): its invoice"
                           f" {cmd.invoice_id!r} grants no allowance")
    if cmd.period_end <= b.ctx.now:
        raise InvalidState(f"invoice {cmd.invoice_id!r} is for a period that ended {cmd.period_end.isoformat()}")
    expire_due(b)
    if plan.id != b.state.plan:
        b.emit(PlanChanged, old_plan=b.state.plan, new_plan=plan.id)
    # No rollover: what is left of the allowance before goes, whatever its own expiry.
    live = [g for g in b.state.grants.values() if g.source == "allowance" and g.remaining_ucr > 0]
    for g in sorted(live, key=lambda g: (g.granted_at, str(g.grant_id))):
        b.emit(GrantExpired, amount_ucr=-g.remaining_ucr, grant_id=g.grant_id, source=g.source,
               expired_ucr=g.remaining_ucr)
    amount = floor_ucr(credits_to_exact_ucr(plan.monthly_credits))
    assert b.state.opened_at is not None
    grant_id = b.ctx.new_id()
    # Granted even when the plan gives no credits: the entry records that the invoice was honoured.
    b.emit(AllowanceGranted, amount_ucr=amount, grant_id=grant_id, plan=plan.id,
           cycle=cycle_at(b.state.opened_at, cmd.period_start), expires_at=cmd.period_end,
           stripe_invoice=cmd.invoice_id, stripe_subscription=cmd.stripe_subscription, cents_paid=cmd.cents_paid,
           invoice_pdf=cmd.invoice_pdf)
    settle_debt(b, grant_id)


#: The commands decided here.
HANDLERS: dict[type[c.Command], Callable[[Builder, Any], None]] = {
    c.RecordSubscription: _subscription,
    c.GrantPlanAllowance: _plan_allowance,
}
