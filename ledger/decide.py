"""``decide(state, command, ctx) -> events``: every business rule of the write side, pure.

Nothing here touches a database or a clock: time, ids, the rate card and the global coupon
stock come in through ``Context``. A refused command raises a ``LedgerError`` and yields
nothing; the store never records a partial decision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from ledger import commands as c
from ledger.alerts import AlertSpec
from ledger.alerts import facts as alert_facts
from ledger.clock import add_months, day_key, month_key
from ledger.errors import (
    AccountExists,
    CouponRejected,
    InvalidRequest,
    InvalidState,
    NotFound,
    OutOfRange,
    PaymentRequired,
    PurchaseRejected,
    RefundRejected,
    UnknownAccount,
)
from ledger.events import (
    AccountOpened,
    AlertRaised,
    AllowanceGranted,
    ApiKeyCreated,
    ApiKeyRevoked,
    Attribution,
    BudgetSet,
    CouponApplied,
    CreditsGranted,
    CreditsPurchased,
    CreditsReleased,
    CreditsReserved,
    DebtSettled,
    DeploymentPaused,
    DeploymentResumed,
    DeploymentStarted,
    DeploymentStopped,
    Event,
    EventBase,
    GrantExpired,
    LimitSet,
    PlanChanged,
    RefundIssued,
    UsageMetered,
)
from ledger.grants import plan_draws
from ledger.money import (
    MAX_SPEND_UCR,
    MAX_UCR,
    credits_to_exact_ucr,
    floor_ucr,
    format_credits,
    fraction_to_decimal_str,
)
from ledger.rates import Price, RateCard, coupon_code, normalize_quantities, price
from ledger.state import AccountState, apply, hour_due_at, spend_keys

E = TypeVar("E", bound=EventBase)

#: How late usage may be reported: a backfill after an outage, not a rewrite of closed months.
MAX_BACKDATE = timedelta(days=90)


@dataclass(frozen=True)
class Context:
    """What a decision may know beyond the account: now, the rate card, ids, global coupon stock."""

    now: datetime
    card: RateCard
    new_id: Callable[[], UUID]
    #: Redemptions left per coupon code (None: unlimited). Codes absent were not loaded.
    coupon_stock: Mapping[str, int | None] = field(default_factory=dict)


class _Builder:
    """Emits events one at a time, folding each into the state so the next sees it."""

    def __init__(self, state: AccountState, command: c.Command, ctx: Context) -> None:
        self.state = state
        self.ctx = ctx
        self.key = command.idempotency_key
        self.events: list[Event] = []

    def emit(self, cls: type[E], *, amount_ucr: int = 0, occurred_at: datetime | None = None,
             **fields: Any) -> E:
        balance_after = self.state.balance_ucr + amount_ucr
        if abs(amount_ucr) > MAX_UCR or abs(balance_after) > MAX_UCR:
            # Refused here, as bad input, rather than by a BIGINT overflow in the database.
            raise OutOfRange(f"the balance would leave the range the ledger holds (±{format_credits(MAX_UCR)}"
                             " credits)")
        # Validated: pydantic's compiled validator is also faster than ``model_construct``'s
        # Python loop over the fields.
        event = cls.model_validate({
            "event_id": self.ctx.new_id(),
            "account_id": self.state.account_id,
            "occurred_at": occurred_at or self.ctx.now,
            "recorded_at": self.ctx.now,
            "idempotency_key": self.key,
            "amount_ucr": amount_ucr,
            "balance_after_ucr": balance_after,
            **fields,
        })
        self.events.append(event)  # type: ignore[arg-type]
        self.state = apply(self.state, event)  # type: ignore[arg-type]
        return event


# ---- shared rules --------------------------------------------------------------------------

def _require_account(state: AccountState) -> None:
    if not state.exists:
        raise UnknownAccount(state.account_id)
    if state.status == "closed":
        raise InvalidState(f"account {state.account_id!r} is closed")


def _expire_due(b: _Builder) -> None:
    """Expire grants whose time is up before anything spends from them."""
    now = b.ctx.now
    due = [g for g in b.state.grants.values()
           if g.expires_at is not None and g.expires_at <= now and g.remaining_ucr > 0]
    for g in sorted(due, key=lambda g: (g.expires_at or now, str(g.grant_id))):
            b.emit(GrantExpired, amount_ucr=-g.remaining_ucr, grant_id=g.grant_id, source=g.source,
                   expired_ucr=g.remaining_ucr)


def _settle_debt(b: _Builder, grant_id: UUID) -> None:
    """New credits pay debt first: draw from the grant just added."""
    debt = b.state.debt_ucr
    grant = b.state.grants[grant_id]
    settled = min(debt, grant.remaining_ucr)
    if settled > 0:
        draws, _ = plan_draws([grant], settled)
        b.emit(DebtSettled, settled_ucr=settled, draws=draws)


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


def _debit(b: _Builder, p: Price, *, attribution: Attribution, gated: bool,
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


def _hour_price(card: RateCard, instance_type: str) -> Price:
    op = card.operation(instance_type)
    if op.kind != "instance":
        raise InvalidRequest(f"{instance_type!r} is not an instance type")
    return price(card, instance_type, {op.unit: 1})


# ---- one function per command --------------------------------------------------------------

def _open(b: _Builder, cmd: c.OpenAccount) -> None:
    if b.state.exists:
        raise AccountExists(f"account {cmd.account_id!r} already exists")
    card = b.ctx.card
    plan = card.plan(cmd.plan or card.default_plan)
    b.emit(AccountOpened, name=cmd.name, plan=plan.id)
    signup = floor_ucr(credits_to_exact_ucr(plan.signup_credits))
    if signup:
        expires = (b.ctx.now + timedelta(days=plan.signup_credits_expire_days)
                   if plan.signup_credits_expire_days else None)
        b.emit(CreditsGranted, amount_ucr=signup, grant_id=b.ctx.new_id(), source="promotion",
               expires_at=expires, reason="signup")
    _allowance(b, 0)


def _allowance(b: _Builder, cycle: int) -> None:
    s = b.state
    if cycle <= s.allowance_cycle:
        raise InvalidState(f"allowance for cycle {cycle} was already granted")
    assert s.opened_at is not None
    starts, ends = add_months(s.opened_at, cycle), add_months(s.opened_at, cycle + 1)
    if not starts <= b.ctx.now < ends:
        raise InvalidState(f"cycle {cycle} runs {starts.isoformat()} to {ends.isoformat()}, not now")
    _expire_due(b)
    amount = floor_ucr(credits_to_exact_ucr(b.ctx.card.plan(s.plan).monthly_credits))
    if amount:
        grant_id = b.ctx.new_id()
        b.emit(AllowanceGranted, amount_ucr=amount, grant_id=grant_id, plan=s.plan, cycle=cycle,
               expires_at=ends)
        _settle_debt(b, grant_id)


def _grant(b: _Builder, cmd: c.GrantCredits) -> None:
    if cmd.expires_at is not None and cmd.expires_at <= b.ctx.now:
        raise InvalidRequest("expires_at is in the past")
    _expire_due(b)
    grant_id = b.ctx.new_id()
    b.emit(CreditsGranted, amount_ucr=cmd.amount_ucr, grant_id=grant_id, source=cmd.source,
           expires_at=cmd.expires_at, reason=cmd.reason)
    _settle_debt(b, grant_id)


def _coupon(b: _Builder, cmd: c.RedeemCoupon) -> None:
    coupon = b.ctx.card.coupon(cmd.code)  # whatever its case
    if coupon is None:
        raise CouponRejected(cmd.code, "unknown")
    code = coupon.code  # the card's spelling, for the event, the redemption and the stock
    if coupon.expires_at is not None and coupon.expires_at <= b.ctx.now:
        raise CouponRejected(code, "expired")
    if coupon_code(code) in b.state.coupons_redeemed:
        raise CouponRejected(code, "already_redeemed")
    stock = b.ctx.coupon_stock.get(code, coupon.max_redemptions)
    if stock is not None and stock <= 0:
        raise CouponRejected(code, "used_up")
    _expire_due(b)
    grant_id = b.ctx.new_id()
    expires = b.ctx.now + timedelta(days=coupon.grant_expires_days) if coupon.grant_expires_days else None
    b.emit(CouponApplied, amount_ucr=floor_ucr(credits_to_exact_ucr(coupon.credits)), grant_id=grant_id,
           code=code, expires_at=expires)
    _settle_debt(b, grant_id)


def _charge(b: _Builder, cmd: c.Charge) -> None:
    p = price_usage(b.ctx.card, cmd.operation, cmd.quantity, cmd.quantities)
    _expire_due(b)
    check_spend(b.state, p.amount_ucr, cmd.attribution, b.ctx.now, b.ctx.card)
    _debit(b, p, attribution=cmd.attribution, gated=True)


def _meter(b: _Builder, cmd: c.Meter) -> None:
    p = price_usage(b.ctx.card, cmd.operation, cmd.quantity, cmd.quantities)
    if cmd.occurred_at is not None and cmd.occurred_at > b.ctx.now + timedelta(minutes=5):
        raise InvalidRequest("occurred_at is in the future")
    if cmd.occurred_at is not None and cmd.occurred_at < b.ctx.now - MAX_BACKDATE:
        raise InvalidRequest(f"occurred_at is more than {MAX_BACKDATE.days} days in the past")
    _expire_due(b)
    _debit(b, p, attribution=cmd.attribution, gated=False, occurred_at=cmd.occurred_at)


def _reserve(b: _Builder, cmd: c.Reserve) -> None:
    card = b.ctx.card
    card.operation(cmd.operation)
    if cmd.amount_ucr is not None:
        if cmd.quantity is not None or cmd.quantities is not None:
            raise InvalidRequest("give an amount or a quantity, not both")
        held = cmd.amount_ucr
    else:
        held = price_usage(card, cmd.operation, cmd.quantity, cmd.quantities).amount_ucr
    _expire_due(b)
    check_spend(b.state, held, cmd.attribution, b.ctx.now, card)
    b.emit(CreditsReserved, reservation_id=b.ctx.new_id(), operation=cmd.operation, held_ucr=held,
           expires_at=b.ctx.now + timedelta(seconds=cmd.ttl_s))


def _held(b: _Builder, reservation_id: UUID) -> None:
    r = b.state.reservations.get(reservation_id)
    if r is None:
        raise NotFound(f"no reservation {reservation_id}")
    if r.status != "held":
        raise InvalidState(f"reservation {reservation_id} is already {r.status}")


def _settle(b: _Builder, cmd: c.Settle) -> None:
    _held(b, cmd.reservation_id)
    r = b.state.reservations[cmd.reservation_id]
    p = price_usage(b.ctx.card, r.operation, cmd.quantity, cmd.quantities)
    _expire_due(b)
    # The work happened: release the whole hold, then meter what was used (never refused).
    b.emit(CreditsReleased, reservation_id=r.reservation_id,
           released_ucr=max(r.held_ucr - p.amount_ucr, 0), reason="settled")
    _debit(b, p, attribution=cmd.attribution, gated=False, reservation_id=r.reservation_id)


def _release(b: _Builder, cmd: c.Release) -> None:
    _held(b, cmd.reservation_id)
    r = b.state.reservations[cmd.reservation_id]
    b.emit(CreditsReleased, reservation_id=r.reservation_id, released_ucr=r.held_ucr, reason="released")


def _expire_reservations(b: _Builder, cmd: c.ExpireReservations) -> None:
    for r in sorted(b.state.reservations.values(), key=lambda r: (r.expires_at, str(r.reservation_id))):
        if r.status == "held" and r.expires_at <= b.ctx.now:
            b.emit(CreditsReleased, reservation_id=r.reservation_id, released_ucr=r.held_ucr,
                   reason="expired")


def _purchase(b: _Builder, cmd: c.RecordPurchase) -> None:
    card = b.ctx.card
    bonus = 0
    if cmd.kind == "pack":
        if cmd.pack_id is None:
            raise InvalidRequest("a pack purchase needs pack_id")
        pack = card.pack(cmd.pack_id)
        # Never more than was paid for: a pack is bought at its price or not at all.
        if cmd.cents_paid != pack.price_cents:
            raise PurchaseRejected(f"pack {pack.id!r} costs {pack.price_cents} cents; {cmd.cents_paid} were paid",
                                   "price_mismatch")
        credits = floor_ucr(credits_to_exact_ucr(pack.credits))
        bonus = floor_ucr(credits_to_exact_ucr(pack.bonus))
    elif cmd.kind == "custom":
        rule = card.custom_amount
        if not rule.min_cents <= cmd.cents_paid <= rule.max_cents:
            raise PurchaseRejected(f"a custom amount must be {rule.min_cents} to {rule.max_cents} cents;"
                                   f" {cmd.cents_paid} were paid", "amount_out_of_range")
        # Rounded down: never a µcr more than the amount buys.
        credits = floor_ucr(credits_to_exact_ucr(rule.credits_per_dollar) * cmd.cents_paid / 100)
    else:
        if cmd.credits_ucr is None:
            raise InvalidRequest(f"a {cmd.kind} purchase needs credits_ucr")
        credits = cmd.credits_ucr
    if cmd.credits_ucr is not None and cmd.credits_ucr != credits:
        raise PurchaseRejected(f"{cmd.cents_paid} cents buy {format_credits(credits)} credits on the rate card,"
                               f" not {format_credits(cmd.credits_ucr)}", "credits_mismatch")
    if credits + bonus > MAX_UCR:
        raise OutOfRange("purchase out of range")
    _expire_due(b)
    grant_id = b.ctx.new_id()
    b.emit(CreditsPurchased, amount_ucr=credits + bonus, grant_id=grant_id, kind=cmd.kind,
           pack_id=cmd.pack_id, cents_paid=cmd.cents_paid, credits_ucr=credits, bonus_ucr=bonus,
           stripe_payment_intent=cmd.stripe_payment_intent,
           stripe_checkout_session=cmd.stripe_checkout_session, stripe_event_id=cmd.stripe_event_id)
    _settle_debt(b, grant_id)


def _refund(b: _Builder, cmd: c.IssueRefund) -> None:
    purchase = None
    if cmd.purchase_id is not None:
        purchase = b.state.purchases.get(cmd.purchase_id)
        if purchase is None:
            raise NotFound(f"account {b.state.account_id!r} has no purchase {cmd.purchase_id}: purchase_id is"
                           " the id of the purchase's ledger entry")
    if cmd.direction == "credit":
        if cmd.amount_ucr is None:
            raise InvalidRequest("a credit refund needs an amount")
        if cmd.force:
            raise InvalidRequest("force applies to a clawback of a purchase, not to a credit")
        _expire_due(b)
        grant_id = b.ctx.new_id()
        b.emit(RefundIssued, amount_ucr=cmd.amount_ucr, direction="credit", grant_id=grant_id,
               purchase_id=cmd.purchase_id, requested_ucr=cmd.amount_ucr, reason=cmd.reason)
        _settle_debt(b, grant_id)
        return
    if purchase is None:
        raise InvalidRequest("a clawback names the purchase_id it refunds")
    # Purchased credits are refundable within the card's window; after it, only an operator's force.
    days = b.ctx.card.refund_window_days
    closed_at = purchase.purchased_at + timedelta(days=days)
    outside = b.ctx.now > closed_at
    if outside and not cmd.force:
        raise RefundRejected(
            f"purchase {purchase.purchase_id} is outside the {days}-day refund window (it closed"
            f" {closed_at.isoformat()}); an operator may force the refund", "refund_window_closed")
    grant = b.state.grants.get(purchase.grant_id)
    if grant is None:  # the store loads it with the purchase; absent only if the inline state is broken
        raise NotFound(f"no grant for purchase {purchase.purchase_id}")
    _expire_due(b)
    requested = cmd.amount_ucr if cmd.amount_ucr is not None else grant.original_ucr
    taken = min(requested, grant.remaining_ucr)
    b.emit(RefundIssued, amount_ucr=-taken, direction="clawback", grant_id=grant.grant_id,
           purchase_id=purchase.purchase_id, requested_ucr=requested, capped=taken < requested, forced=outside,
           reason=cmd.reason)


def _deployment(b: _Builder, deployment_id: str, *statuses: str) -> None:
    d = b.state.deployments.get(deployment_id)
    if d is None:
        raise NotFound(f"no deployment {deployment_id!r}")
    if d.status not in statuses:
        raise InvalidState(f"deployment {deployment_id!r} is {d.status}")


def _start(b: _Builder, cmd: c.StartDeployment) -> None:
    existing = b.state.deployments.get(cmd.deployment_id)
    if existing is not None:
        raise InvalidState(f"deployment {cmd.deployment_id!r} exists ({existing.status})")
    p = _hour_price(b.ctx.card, cmd.instance_type)
    _expire_due(b)
    attribution = Attribution(deployment=cmd.deployment_id)
    check_spend(b.state, p.amount_ucr, attribution, b.ctx.now, b.ctx.card)
    b.emit(DeploymentStarted, deployment_id=cmd.deployment_id, instance_type=cmd.instance_type,
           hourly_ucr=p.amount_ucr)
    _debit(b, p, attribution=attribution, gated=True, deployment_id=cmd.deployment_id, hour_index=0)


def _charge_hour(b: _Builder, cmd: c.ChargeDeploymentHour) -> None:
    _deployment(b, cmd.deployment_id, "running")
    d = b.state.deployments[cmd.deployment_id]
    if cmd.hour_index < d.hours_charged:
        raise InvalidState(f"hour {cmd.hour_index} of {d.deployment_id!r} is already charged")
    if cmd.hour_index > d.hours_charged:
        raise InvalidState(f"hour {d.hours_charged} of {d.deployment_id!r} must be charged first")
    assert d.segment_started_at is not None
    due = hour_due_at(d.segment_started_at, d.used, cmd.hour_index)
    if due > b.ctx.now:
        raise InvalidState(f"hour {cmd.hour_index} of {d.deployment_id!r} is not due until {due.isoformat()}")
    p = _hour_price(b.ctx.card, d.instance_type)
    _expire_due(b)
    attribution = Attribution(deployment=d.deployment_id)
    try:
        check_spend(b.state, p.amount_ucr, attribution, b.ctx.now, b.ctx.card)
    except PaymentRequired as refused:
        if not cmd.pause_if_unpaid:
            raise
        b.emit(DeploymentPaused, deployment_id=d.deployment_id, reason=refused.reason)
        return
    # Dated when it fell due, but never before this running segment: time used before a pause
    # that was not charged then (a scheduler that was down) is charged as the segment starts.
    _debit(b, p, attribution=attribution, gated=True, occurred_at=max(due, d.segment_started_at),
           deployment_id=d.deployment_id, hour_index=cmd.hour_index)


def _charge_used_hours(b: _Builder, deployment_id: str) -> None:
    """Before a running deployment's clock stops (a stop or a pause): charge every hour due by now
    that no scheduler charged (it was down or behind), each with its own hour index, dated when it
    fell due.

    The running time was used, so these are metered: never refused for lack of credits, the unpaid
    rest becomes debt. ``hours_charged`` is the one count this and ``ChargeDeploymentHour`` advance,
    under the account's lock: a scheduler's charge of the same hour that lands first leaves it out
    here, and one that lands after is refused (the deployment is no longer running, or the hour is
    already charged), so each hour index is charged once.
    """
    d = b.state.deployments[deployment_id]
    due = d.hours_due(b.ctx.now)
    if not due:
        return
    assert d.segment_started_at is not None  # running
    p = _hour_price(b.ctx.card, d.instance_type)
    _expire_due(b)
    attribution = Attribution(deployment=d.deployment_id)
    for n in due:
        # As ``_charge_hour`` dates it: when it fell due, never before this running segment.
        when = max(hour_due_at(d.segment_started_at, d.used, n), d.segment_started_at)
        _debit(b, p, attribution=attribution, gated=False, occurred_at=when, deployment_id=d.deployment_id,
               hour_index=n)


def _stop(b: _Builder, cmd: c.StopDeployment) -> None:
    _deployment(b, cmd.deployment_id, "running", "paused")
    # A paused deployment's clock stopped at the pause, which charged what was due then (or its
    # hour was refused, which is what paused it): nothing more is owed.
    if b.state.deployments[cmd.deployment_id].status == "running":
        _charge_used_hours(b, cmd.deployment_id)
    b.emit(DeploymentStopped, deployment_id=cmd.deployment_id)


def _pause(b: _Builder, cmd: c.PauseDeployment) -> None:
    _deployment(b, cmd.deployment_id, "running")
    _charge_used_hours(b, cmd.deployment_id)
    b.emit(DeploymentPaused, deployment_id=cmd.deployment_id, reason=cmd.reason)


def _resume(b: _Builder, cmd: c.ResumeDeployment) -> None:
    _deployment(b, cmd.deployment_id, "paused")
    d = b.state.deployments[cmd.deployment_id]
    if d.used < d.paid:
        # Paid time is left: the clock runs on, and the next hour is charged when it runs out.
        b.emit(DeploymentResumed, deployment_id=d.deployment_id)
        return
    p = _hour_price(b.ctx.card, d.instance_type)
    _expire_due(b)
    attribution = Attribution(deployment=d.deployment_id)
    check_spend(b.state, p.amount_ucr, attribution, b.ctx.now, b.ctx.card)
    b.emit(DeploymentResumed, deployment_id=d.deployment_id)
    _debit(b, p, attribution=attribution, gated=True, deployment_id=d.deployment_id,
           hour_index=d.hours_charged)


def _budget(b: _Builder, cmd: c.SetBudget) -> None:
    if cmd.warn_pct >= cmd.critical_pct:
        raise InvalidRequest("warn_pct must be below critical_pct")
    b.emit(BudgetSet, monthly_limit_ucr=cmd.monthly_limit_ucr, warn_pct=cmd.warn_pct,
           critical_pct=cmd.critical_pct, hard_stop=cmd.hard_stop)


def _limit(b: _Builder, cmd: c.SetLimit) -> None:
    b.emit(LimitSet, scope=cmd.scope, subject=cmd.subject, per_run_ucr=cmd.per_run_ucr,
           per_day_ucr=cmd.per_day_ucr, per_month_ucr=cmd.per_month_ucr)


def _plan(b: _Builder, cmd: c.ChangePlan) -> None:
    new = b.ctx.card.plan(cmd.plan)
    if new.id == b.state.plan:
        raise InvalidState(f"account is already on plan {new.id!r}")
    b.emit(PlanChanged, old_plan=b.state.plan, new_plan=new.id)


def _raise_alert(b: _Builder, cmd: c.RaiseAlert) -> None:
    if cmd.kind in ("daily_summary", "weekly_summary"):
        if cmd.spent_ucr is None:
            raise InvalidRequest("a summary needs spent_ucr")
        what = "yesterday" if cmd.kind == "daily_summary" else "last week"
        b.emit(AlertRaised, kind=cmd.kind, scope=cmd.scope, subject=cmd.subject, period=cmd.period,
               threshold_pct=0, level="info", message=f"{format_credits(cmd.spent_ucr)} credits spent {what}",
               spent_ucr=cmd.spent_ucr, limit_ucr=0)
        return
    spec = AlertSpec(cmd.kind, cmd.scope, cmd.subject, cmd.period, cmd.threshold_pct)
    found = alert_facts(b.state, spec, b.ctx.card)
    if found is None:
        # Refused, so no key is kept: the alert can still fire later in the same period.
        raise InvalidState(f"alert {spec.key} does not hold now")
    b.emit(AlertRaised, kind=cmd.kind, scope=cmd.scope, subject=cmd.subject, period=cmd.period,
           threshold_pct=cmd.threshold_pct, level=found.level, message=found.message, spent_ucr=found.spent_ucr,
           limit_ucr=found.limit_ucr)


def _pause_for_debt(b: _Builder, cmd: c.PauseForDebt) -> None:
    if b.state.debt_ucr <= 0:
        return
    for d in sorted(b.state.deployments.values(), key=lambda d: d.deployment_id):
        if d.status == "running":
            _charge_used_hours(b, d.deployment_id)
            b.emit(DeploymentPaused, deployment_id=d.deployment_id, reason="in_debt")


def _create_key(b: _Builder, cmd: c.CreateApiKey) -> None:
    b.emit(ApiKeyCreated, key_id=cmd.key_id, prefix=cmd.prefix, role=cmd.role, name=cmd.name)


def _revoke_key(b: _Builder, cmd: c.RevokeApiKey) -> None:
    # Whether the key exists and belongs here is checked against ``api_keys`` by the service;
    # the store's update only ever touches this account's unrevoked key.
    b.emit(ApiKeyRevoked, key_id=cmd.key_id)


_HANDLERS: dict[type[c.Command], Callable[[_Builder, Any], None]] = {
    c.ChangePlan: _plan,
    c.GrantCredits: _grant,
    c.RedeemCoupon: _coupon,
    c.Charge: _charge,
    c.Meter: _meter,
    c.Reserve: _reserve,
    c.Settle: _settle,
    c.Release: _release,
    c.ExpireReservations: _expire_reservations,
    c.RecordPurchase: _purchase,
    c.IssueRefund: _refund,
    c.GrantAllowance: lambda b, cmd: _allowance(b, cmd.cycle),
    c.ExpireGrants: lambda b, cmd: _expire_due(b),
    c.StartDeployment: _start,
    c.ChargeDeploymentHour: _charge_hour,
    c.StopDeployment: _stop,
    c.PauseDeployment: _pause,
    c.ResumeDeployment: _resume,
    c.SetBudget: _budget,
    c.SetLimit: _limit,
    c.CreateApiKey: _create_key,
    c.RaiseAlert: _raise_alert,
    c.PauseForDebt: _pause_for_debt,
    c.RevokeApiKey: _revoke_key,
}


def decide(state: AccountState, command: c.Command, ctx: Context) -> list[Event]:
    """The events ``command`` produces on ``state``, or a ``LedgerError`` if it is refused."""
    return execute(state, command, ctx)[0]


def execute(state: AccountState, command: c.Command, ctx: Context) -> tuple[list[Event], AccountState]:
    """``decide`` and the state after its events, folded once."""
    b = _Builder(state, command, ctx)
    if type(command) is c.OpenAccount:
        _open(b, command)
    else:
        _require_account(state)
        handler = _HANDLERS.get(type(command))
        if handler is None:
            raise InvalidRequest(f"unknown command {type(command).__name__}")
        handler(b, command)
    return b.events, b.state


def fold(state: AccountState, events: list[Event]) -> AccountState:
    """Apply ``events`` in order."""
    for e in events:
        state = apply(state, e)
    return state


