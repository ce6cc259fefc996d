"""Auto-refill as a state machine: the rule and the payment method, then per crossing below the
threshold one request, which a payment lands (``RecordPurchase(kind="auto_refill", crossing=n)``,
decided in ``credits``) or a failure closes.

Nothing here calls Stripe: ``RequestAutoRefill`` records that one refill is due and owed to the
payment method (``AutoRefillRequested``); the relay that charges it derives Stripe's idempotency
key from the crossing, so one crossing is never two PaymentIntents. A refill that is not due is
refused with ``AutoRefillRefused`` (409, its ``reason``) and records nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger import commands as c
from ledger.clock import day_key
from ledger.decide.context import Builder
from ledger.errors import AutoRefillRefused, InvalidRequest, InvalidState, PurchaseRejected
from ledger.events import (
    AlertRaised,
    AutoRefillConfigured,
    AutoRefillFailed,
    AutoRefillRequested,
    PaymentMethodSaved,
)
from ledger.money import credits_to_exact_ucr, format_cents, format_credits
from ledger.payments import REFILL_BREAKER, RefillRequest
from ledger.rates import CustomAmount
from ledger.state import AccountState

#: The kind of the alert a failed refill raises.
REFILL_FAILED_ALERT = "auto_refill_failed"


def refill_cents(amount_ucr: int, rule: CustomAmount) -> int:
    """The price of ``amount_ucr`` by the custom-amount rule: the fewest whole cents that buy at least
    it (a custom amount of ``cents`` buys ``floor(credits_per_dollar * cents / 100)``)."""
    per_cent = credits_to_exact_ucr(rule.credits_per_dollar) / 100
    cents = amount_ucr / per_cent
    return -(-cents.numerator // cents.denominator)


def _configure(b: Builder, cmd: c.ConfigureAutoRefill) -> None:
    rule = b.ctx.card.custom_amount
    cents = refill_cents(cmd.amount_ucr, rule)
    if not rule.min_cents <= cents <= rule.max_cents:
        raise PurchaseRejected(
            f"a refill of {format_credits(cmd.amount_ucr)} credits costs {format_cents(cents)}; the rate card sells"
            f" custom amounts from {format_cents(rule.min_cents)} to {format_cents(rule.max_cents)}",
            "amount_out_of_range")
    if cmd.daily_cap_ucr is not None and cmd.daily_cap_ucr < cmd.amount_ucr:
        raise InvalidRequest("daily_cap_ucr is below one refill's amount_ucr: no refill could ever be made")
    b.emit(AutoRefillConfigured, enabled=cmd.enabled, threshold_ucr=cmd.threshold_ucr, refill_ucr=cmd.amount_ucr,
           cents=cents, daily_cap_ucr=cmd.daily_cap_ucr, runout_hours=cmd.runout_hours)


def _save_method(b: Builder, cmd: c.SavePaymentMethod) -> None:
    r = b.state.auto_refill
    if (r.stripe_customer, r.payment_method) == (cmd.stripe_customer, cmd.payment_method):
        return  # the same method saved again is no new card: the breaker stays as it is
    b.emit(PaymentMethodSaved, stripe_customer=cmd.stripe_customer, payment_method=cmd.payment_method)


def refusal(state: AccountState, crossing: int, trigger: str, now_day: str) -> AutoRefillRefused | None:
    """Why no refill is due for ``crossing`` now, or ``None`` when one is (the relay may ask first)."""
    r = state.auto_refill

    def no(reason: str, detail: str) -> AutoRefillRefused:
        return AutoRefillRefused(f"no auto-refill for crossing {crossing}: {detail}", reason)

    if not r.enabled:
        return no("disabled", "auto-refill is off")
    if r.payment_method is None or r.stripe_customer is None:
        return no("no_payment_method", "no payment method is saved")
    if r.breaker_open:
        return no("breaker_open", f"{r.failures} refills failed in a row; a new payment method restarts them")
    if r.pending is not None:
        return no("pending", f"the refill of crossing {r.pending.crossing} is not paid or failed yet")
    if r.last is not None and crossing <= r.last.crossing:
        return no("already_requested", f"a refill was already requested for crossing {r.last.crossing}")
    if trigger == "runout" and r.runout_hours is None:
        return no("runout_off", "no runout_hours is configured")
    if trigger == "threshold" and state.balance_ucr >= r.threshold_ucr:
        return no("above_threshold", f"the balance is {format_credits(state.balance_ucr)} credits, not below"
                                     f" {format_credits(r.threshold_ucr)}")
    if r.daily_cap_ucr is not None and r.requested_on(now_day) + r.amount_ucr > r.daily_cap_ucr:
        return no("daily_cap", f"{format_credits(r.requested_on(now_day))} credits were requested today; the cap"
                               f" is {format_credits(r.daily_cap_ucr)}")
    return None


def _request(b: Builder, cmd: c.RequestAutoRefill) -> None:
    if cmd.crossing > b.state.version:
        raise InvalidRequest(f"crossing {cmd.crossing} is past the account's last version {b.state.version}")
    refused = refusal(b.state, cmd.crossing, cmd.trigger, day_key(b.ctx.now))
    if refused is not None:
        raise refused
    r = b.state.auto_refill
    assert r.payment_method is not None and r.stripe_customer is not None  # refusal() checked
    b.emit(AutoRefillRequested, crossing=cmd.crossing, credits_ucr=r.amount_ucr, cents=r.cents, trigger=cmd.trigger,
           stripe_customer=r.stripe_customer, payment_method=r.payment_method)


def _failed(b: Builder, cmd: c.RecordAutoRefillFailure) -> None:
    last = b.state.auto_refill.last
    if last is None or last.crossing != cmd.crossing:
        raise InvalidState(f"no auto-refill was requested for crossing {cmd.crossing}")
    if last.status != "pending":
        # Already failed (a repeated webhook), or paid: a late failure of an earlier attempt at the
        # same PaymentIntent does not undo a payment that succeeded.
        return
    failures = b.state.auto_refill.failures + 1
    b.emit(AutoRefillFailed, crossing=cmd.crossing, payment_intent=cmd.payment_intent, reason=cmd.reason,
           decline_code=cmd.decline_code, failures=failures)
    stopped = failures >= REFILL_BREAKER
    b.emit(AlertRaised, kind=REFILL_FAILED_ALERT, scope="account", subject="", period=f"crossing:{cmd.crossing}",
           threshold_pct=0, level="critical" if stopped else "warning",
           message=f"the auto-refill of {format_credits(last.credits_ucr)} credits failed ({cmd.reason})"
                   + (f"; {failures} failures in a row: refills stop until the payment method changes"
                      if stopped else ""),
           spent_ucr=0, limit_ucr=last.credits_ucr)


def refill_to_land(state: AccountState, cmd: c.RecordPurchase) -> RefillRequest | None:
    """The request an auto-refill payment of ``cmd.crossing`` lands, or ``None`` when it already
    landed (the synchronous answer and the webhook both report one payment: credited once)."""
    if cmd.kind != "auto_refill":
        raise InvalidRequest("only an auto_refill purchase names a crossing")
    last = state.auto_refill.last
    if last is None or last.crossing != cmd.crossing:
        raise InvalidState(f"no auto-refill was requested for crossing {cmd.crossing}")
    if last.status == "paid":
        return None
    # A failed one may still be paid (e.g. after the customer authenticated): the money came in.
    if cmd.credits_ucr is not None and cmd.credits_ucr != last.credits_ucr:
        raise PurchaseRejected(f"the refill of crossing {cmd.crossing} is {format_credits(last.credits_ucr)} credits,"
                               f" not {format_credits(cmd.credits_ucr)}", "credits_mismatch")
    if cmd.cents_paid != last.cents:
        raise PurchaseRejected(f"the refill of crossing {cmd.crossing} costs {last.cents} cents; {cmd.cents_paid}"
                               " were paid", "price_mismatch")
    return last


#: The commands decided here.
HANDLERS: dict[type[c.Command], Callable[[Builder, Any], None]] = {
    c.ConfigureAutoRefill: _configure,
    c.SavePaymentMethod: _save_method,
    c.RequestAutoRefill: _request,
    c.RecordAutoRefillFailure: _failed,
}
