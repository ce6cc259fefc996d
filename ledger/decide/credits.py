"""Credits coming in: grants, the monthly allowance, coupons, purchases, refunds; expiry, and new
credits paying debt first."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

from ledger import commands as c
from ledger.clock import add_months
from ledger.decide.auto_refill import refill_to_land
from ledger.decide.context import Builder
from ledger.errors import (
    CouponRejected,
    InvalidRequest,
    InvalidState,
    NotFound,
    OutOfRange,
    PurchaseRejected,
    RefundRejected,
)
from ledger.events import (
    AllowanceGranted,
    CouponApplied,
    CreditsGranted,
    CreditsPurchased,
    DebtSettled,
    GrantExpired,
    RefundIssued,
)
from ledger.grants import plan_draws
from ledger.money import MAX_UCR, credits_to_exact_ucr, floor_ucr, format_credits
from ledger.rates import coupon_code


def expire_due(b: Builder) -> None:
    """Expire grants whose time is up before anything spends from them."""
    now = b.ctx.now
    due = [g for g in b.state.grants.values()
           if g.expires_at is not None and g.expires_at <= now and g.remaining_ucr > 0]
    for g in sorted(due, key=lambda g: (g.expires_at or now, str(g.grant_id))):
        b.emit(GrantExpired, amount_ucr=-g.remaining_ucr, grant_id=g.grant_id, source=g.source,
               expired_ucr=g.remaining_ucr)


def settle_debt(b: Builder, grant_id: UUID) -> None:
    """New credits pay debt first: draw from the grant just added."""
    debt = b.state.debt_ucr
    grant = b.state.grants[grant_id]
    settled = min(debt, grant.remaining_ucr)
    if settled > 0:
        draws, _ = plan_draws([grant], settled)
        b.emit(DebtSettled, settled_ucr=settled, draws=draws)


def allowance(b: Builder, cycle: int) -> None:
    """The plan's monthly credits for ``cycle`` (once, while it runs), expiring when it ends."""
    s = b.state
    if cycle <= s.allowance_cycle:
        raise InvalidState(f"allowance for cycle {cycle} was already granted")
    if s.subscription is not None and s.subscription.live:
        raise InvalidState(f"the allowance of plan {s.plan!r} comes with each paid invoice of subscription"
                           f" {s.subscription.stripe_subscription!r}, not from the calendar")
    assert s.opened_at is not None
    starts, ends = add_months(s.opened_at, cycle), add_months(s.opened_at, cycle + 1)
    if not starts <= b.ctx.now < ends:
        raise InvalidState(f"cycle {cycle} runs {starts.isoformat()} to {ends.isoformat()}, not now")
    expire_due(b)
    amount = floor_ucr(credits_to_exact_ucr(b.ctx.card.plan(s.plan).monthly_credits))
    if amount:
        grant_id = b.ctx.new_id()
        b.emit(AllowanceGranted, amount_ucr=amount, grant_id=grant_id, plan=s.plan, cycle=cycle,
               expires_at=ends)
        settle_debt(b, grant_id)


def _grant(b: Builder, cmd: c.GrantCredits) -> None:
    if cmd.expires_at is not None and cmd.expires_at <= b.ctx.now:
        raise InvalidRequest("expires_at is in the past")
    expire_due(b)
    grant_id = b.ctx.new_id()
    b.emit(CreditsGranted, amount_ucr=cmd.amount_ucr, grant_id=grant_id, source=cmd.source,
           expires_at=cmd.expires_at, reason=cmd.reason)
    settle_debt(b, grant_id)


def _coupon(b: Builder, cmd: c.RedeemCoupon) -> None:
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
    expire_due(b)
    grant_id = b.ctx.new_id()
    expires = b.ctx.now + timedelta(days=coupon.grant_expires_days) if coupon.grant_expires_days else None
    b.emit(CouponApplied, amount_ucr=floor_ucr(credits_to_exact_ucr(coupon.credits)), grant_id=grant_id,
           code=code, expires_at=expires)
    settle_debt(b, grant_id)


def _purchase(b: Builder, cmd: c.RecordPurchase) -> None:
    card = b.ctx.card
    bonus = 0
    if cmd.crossing is not None:
        refill = refill_to_land(b.state, cmd)
        if refill is None:
            return  # this refill's payment already landed
        credits = refill.credits_ucr
    elif cmd.kind == "pack":
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
    expire_due(b)
    grant_id = b.ctx.new_id()
    b.emit(CreditsPurchased, amount_ucr=credits + bonus, grant_id=grant_id, kind=cmd.kind,
           pack_id=cmd.pack_id, cents_paid=cmd.cents_paid, credits_ucr=credits, bonus_ucr=bonus,
           stripe_payment_intent=cmd.stripe_payment_intent,
           stripe_checkout_session=cmd.stripe_checkout_session, stripe_event_id=cmd.stripe_event_id,
           stripe_charge=cmd.stripe_charge, stripe_customer=cmd.stripe_customer, stripe_invoice=cmd.stripe_invoice,
           receipt_url=cmd.receipt_url, invoice_pdf=cmd.invoice_pdf, crossing=cmd.crossing)
    settle_debt(b, grant_id)


def _refund(b: Builder, cmd: c.IssueRefund) -> None:
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
        expire_due(b)
        grant_id = b.ctx.new_id()
        b.emit(RefundIssued, amount_ucr=cmd.amount_ucr, direction="credit", grant_id=grant_id,
               purchase_id=cmd.purchase_id, requested_ucr=cmd.amount_ucr, reason=cmd.reason)
        settle_debt(b, grant_id)
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
    expire_due(b)
    requested = cmd.amount_ucr if cmd.amount_ucr is not None else grant.original_ucr
    taken = min(requested, grant.remaining_ucr)
    b.emit(RefundIssued, amount_ucr=-taken, direction="clawback", grant_id=grant.grant_id,
           purchase_id=purchase.purchase_id, requested_ucr=requested, capped=taken < requested, forced=outside,
           reason=cmd.reason)


#: The commands decided here.
HANDLERS: dict[type[c.Command], Callable[[Builder, Any], None]] = {
    c.GrantCredits: _grant,
    c.RedeemCoupon: _coupon,
    c.RecordPurchase: _purchase,
    c.IssueRefund: _refund,
    c.GrantAllowance: lambda b, cmd: allowance(b, cmd.cycle),
    c.ExpireGrants: lambda b, cmd: expire_due(b),
}
