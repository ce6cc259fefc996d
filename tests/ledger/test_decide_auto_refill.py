"""decide, auto-refill: given events, when a command, then events (or a typed refusal). Pure.

The rule (threshold, amount priced by the card's custom-amount rule, daily cap), the payment
method and its breaker (three failures in a row), one request per crossing with one pending at a
time, and the payment that lands it (paying debt first) or the failure that closes it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import commands as c
from ledger.decide.auto_refill import refill_cents
from ledger.errors import AutoRefillRefused, InvalidRequest, InvalidState, PurchaseRejected
from ledger.events import (
    AlertRaised,
    AutoRefillConfigured,
    AutoRefillFailed,
    AutoRefillRequested,
    CreditsPurchased,
    DebtSettled,
    PaymentMethodSaved,
)
from ledger.money import credits_to_exact_ucr, floor_ucr
from ledger.rates import CustomAmount
from tests.ledger.test_decide import ACCT, DAY, C, Scenario, free_account, meter, only, types


def configure(threshold: int = 5 * C, amount: int = 20 * C, **kw: Any) -> c.ConfigureAutoRefill:
    return c.ConfigureAutoRefill(account_id=ACCT, enabled=kw.pop("enabled", True), threshold_ucr=threshold,
                                 amount_ucr=amount, **kw)


def method(pm: str = "pm_1") -> c.SavePaymentMethod:
    return c.SavePaymentMethod(account_id=ACCT, stripe_customer="cus_1", payment_method=pm)


def request(s: Scenario, crossing: int | None = None, trigger: Any = "threshold") -> c.RequestAutoRefill:
    return c.RequestAutoRefill(account_id=ACCT, crossing=crossing or s.state.version, trigger=trigger)


def paid(crossing: int, cents: int = 2000, credits: int | None = None) -> c.RecordPurchase:
    return c.RecordPurchase(account_id=ACCT, kind="auto_refill", cents_paid=cents, credits_ucr=credits,
                            crossing=crossing, stripe_payment_intent=f"pi_{crossing}")


def failed(crossing: int, reason: str = "card_declined") -> c.RecordAutoRefillFailure:
    return c.RecordAutoRefillFailure(account_id=ACCT, crossing=crossing, payment_intent=f"pi_{crossing}",
                                     reason=reason, decline_code="insufficient_funds")


def armed() -> Scenario:
    """A free account (5 signup credits) with auto-refill on (below 5, buy 20) and a card; versioned
    as the store would (the fold leaves versions to the store)."""
    return versioned(free_account().given(configure(), method()))


def below(s: Scenario, email: int = 1000) -> Scenario:
    """Spend ``email`` messages (1,000 = 1 credit): the balance goes below the threshold."""
    s.when(meter("email", email))
    return versioned(s)


def versioned(s: Scenario) -> Scenario:
    s.state = replace(s.state, version=len(s.history))
    return s


def refused(s: Scenario, cmd: c.Command, reason: str) -> None:
    assert s.refused(cmd, AutoRefillRefused).reason == reason


# ---- the rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("per_dollar", "amount", "cents"), [
    ("1", 20 * C, 2000), ("3", 10 * C, 334), ("0.5", 1, 1), ("1", 1, 1), ("1", 10_001, 2), ("7", 7 * C, 100)])
def test_a_refill_costs_the_fewest_cents_that_buy_its_amount(per_dollar: str, amount: int, cents: int) -> None:
    rule = CustomAmount(credits_per_dollar=Decimal(per_dollar))
    assert refill_cents(amount, rule) == cents


@given(st.sampled_from(["1", "3", "0.7", "12.5", "0.000001"]), st.integers(1, 10**12))
def test_the_refill_price_buys_the_amount_and_a_cent_less_does_not(per_dollar: str, amount: int) -> None:
    rule = CustomAmount(credits_per_dollar=Decimal(per_dollar))
    cents = refill_cents(amount, rule)

    def buys(n: int) -> int:  # the custom-amount rule of ``RecordPurchase(kind="custom")``
        return floor_ucr(credits_to_exact_ucr(rule.credits_per_dollar) * n / 100)

    assert buys(cents) >= amount > buys(cents - 1)


def test_configure_prices_the_amount_and_refuses_what_the_card_does_not_sell() -> None:
    s = free_account()
    e = only(s.when(configure(amount=20 * C, daily_cap_ucr=40 * C, runout_hours=12)), AutoRefillConfigured)
    assert (e.enabled, e.threshold_ucr, e.refill_ucr, e.cents, e.daily_cap_ucr, e.runout_hours, e.amount_ucr) == (
        True, 5 * C, 20 * C, 2000, 40 * C, 12, 0)
    assert s.state.auto_refill.cents == 2000
    assert s.refused(configure(amount=C // 2), PurchaseRejected).reason == "amount_out_of_range"  # 50 c < $1
    assert s.refused(configure(amount=100_001 * C), PurchaseRejected).status == 422  # > $100,000
    s.refused(configure(amount=20 * C, daily_cap_ucr=10 * C), InvalidRequest)
    with pytest.raises(ValueError):
        configure(amount=0)


# ---- requests ----------------------------------------------------------------------------------


def test_a_crossing_requests_one_refill_and_its_payment_lands_the_credits() -> None:
    s = below(armed(), 1000)  # 5 -> 4 credits, below 5
    crossing = s.state.version
    e = only(s.when(request(s)), AutoRefillRequested)
    assert (e.crossing, e.credits_ucr, e.cents, e.trigger, e.amount_ucr) == (crossing, 20 * C, 2000, "threshold", 0)
    assert (e.stripe_customer, e.payment_method) == ("cus_1", "pm_1")
    assert s.state.auto_refill.pending is not None
    versioned(s)
    refused(s, request(s), "pending")  # one at a time
    bought = only(s.when(paid(crossing)), CreditsPurchased)
    assert (bought.kind, bought.amount_ucr, bought.crossing, bought.cents_paid) == (
        "auto_refill", 20 * C, crossing, 2000)
    assert s.state.balance_ucr == 24 * C and s.state.auto_refill.pending is None
    versioned(s)
    assert s.when(paid(crossing)) == []  # the webhook after the synchronous answer: credited once
    refused(s, request(s, crossing), "already_requested")  # never two PaymentIntents for one crossing


def test_a_refill_pays_debt_first() -> None:
    s = below(armed(), 8000)  # 5 credits, 8 used: 3 in debt
    assert s.state.debt_ucr == 3 * C
    s.when(request(s))
    events = s.when(paid(s.state.version))
    assert types(events) == ["CreditsPurchased", "DebtSettled"]
    assert only(events, DebtSettled).settled_ucr == 3 * C
    assert (s.state.debt_ucr, s.state.balance_ucr) == (0, 17 * C)


def test_refusals_record_nothing_and_say_why() -> None:
    s = free_account()
    versioned(s)
    refused(s, request(s), "disabled")
    s.given(configure())
    versioned(s)
    refused(s, request(s), "no_payment_method")
    s.given(method())
    versioned(s)
    refused(s, request(s), "above_threshold")  # 5 credits is not below 5
    refused(s, request(s, trigger="runout"), "runout_off")
    s.given(configure(enabled=False))
    below(s)
    refused(s, request(s), "disabled")
    s.refused(c.RequestAutoRefill(account_id=ACCT, crossing=s.state.version + 1), InvalidRequest)


def test_the_runout_trigger_needs_runout_hours_not_a_crossing_below_the_threshold() -> None:
    s = armed().given(configure(runout_hours=24))
    versioned(s)
    e = only(s.when(request(s, trigger="runout")), AutoRefillRequested)
    assert e.trigger == "runout"


def test_the_daily_cap_counts_every_refill_requested_that_utc_day() -> None:
    s = free_account().given(configure(amount=20 * C, daily_cap_ucr=45 * C), method())
    for _ in range(2):
        below(s, 40_000)  # well below the threshold
        s.when(request(s))
        s.when(paid(s.state.version))
        versioned(s)
        below(s, 20_000)
    refused(s, request(s), "daily_cap")  # 40 requested today; 20 more would pass 45
    s.at(s.now.replace(hour=0) + DAY)  # the next UTC day
    s.when(request(s))


# ---- failures and the breaker ------------------------------------------------------------------


def test_a_failure_clears_the_pending_request_and_raises_an_alert() -> None:
    s = below(armed())
    s.when(request(s))
    crossing = s.state.version
    events = s.when(failed(crossing))
    assert types(events) == ["AutoRefillFailed", "AlertRaised"]
    f = only(events, AutoRefillFailed)
    assert (f.crossing, f.failures, f.decline_code, f.amount_ucr) == (crossing, 1, "insufficient_funds", 0)
    alert = only(events, AlertRaised)
    assert (alert.kind, alert.level, alert.period) == ("auto_refill_failed", "warning", f"crossing:{crossing}")
    assert s.state.auto_refill.pending is None and s.state.balance_ucr == 4 * C
    assert s.when(failed(crossing)) == []  # the same failure reported twice counts once
    s.refused(failed(crossing + 5), InvalidState)


def test_three_failures_in_a_row_stop_refills_until_the_payment_method_changes() -> None:
    s = armed()
    for n in range(1, 4):
        below(s, 100)  # each a later event while below: a later crossing to ask for
        s.when(request(s))
        events = s.when(failed(s.state.version))
        assert only(events, AutoRefillFailed).failures == n
        assert only(events, AlertRaised).level == ("critical" if n == 3 else "warning")
    assert "until the payment method changes" in only(events, AlertRaised).message
    below(s, 100)
    refused(s, request(s), "breaker_open")
    assert s.when(method("pm_1")) == []  # the same card again is no new card
    refused(s, request(s), "breaker_open")
    only(s.when(method("pm_2")), PaymentMethodSaved)
    assert s.state.auto_refill.failures == 0
    versioned(s)
    only(s.when(request(s)), AutoRefillRequested)


def test_a_paid_refill_resets_the_failure_streak() -> None:
    s = below(armed())
    s.when(request(s))
    s.when(failed(s.state.version))
    below(s, 100)
    s.when(request(s))
    assert s.state.auto_refill.failures == 1
    s.when(paid(s.state.version))
    assert s.state.auto_refill.failures == 0


def test_a_payment_must_match_its_request() -> None:
    s = below(armed())
    s.when(request(s))
    crossing = s.state.version
    assert s.refused(paid(crossing, cents=1999), PurchaseRejected).reason == "price_mismatch"
    assert s.refused(paid(crossing, credits=21 * C), PurchaseRejected).reason == "credits_mismatch"
    s.refused(paid(crossing + 1), InvalidState)  # no request for that crossing
    s.refused(c.RecordPurchase(account_id=ACCT, kind="custom", cents_paid=2000, crossing=crossing), InvalidRequest)


def test_a_failed_refill_paid_after_all_still_lands_once() -> None:
    s = below(armed())
    s.when(request(s))
    crossing = s.state.version
    s.when(failed(crossing))
    only(s.when(paid(crossing)), CreditsPurchased)  # e.g. the customer authenticated it later
    assert s.state.auto_refill.failures == 0
    assert s.when(failed(crossing)) == [] and s.when(paid(crossing)) == []


def test_when_the_day_changes_the_cap_starts_again() -> None:
    s = free_account().given(configure(amount=20 * C, daily_cap_ucr=20 * C), method())
    below(s, 40_000)
    s.when(request(s))
    s.when(failed(s.state.version))
    below(s, 100)
    refused(s, request(s), "daily_cap")  # a failed refill was still requested today
    s.advance(timedelta(days=1))
    only(s.when(request(s)), AutoRefillRequested)
