"""decide, plans paid through Stripe: the subscription's state and each paid invoice's allowance
(no rollover, purchased credits untouched), back to the default plan when it ends. Pure.

The test card: free (no monthly credits, 5 signup), pro (25 a month), team (150 a month).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ledger import commands as c
from ledger.errors import InvalidRequest, InvalidState, UnknownPlan
from ledger.events import (
    AllowanceGranted,
    CreditsPurchased,
    DebtSettled,
    GrantExpired,
    PlanChanged,
    SubscriptionChanged,
)
from ledger.payments import Subscription
from tests.ledger.test_decide import ACCT, DAY, C, Scenario, free_account, grant_of, meter, only, purchase, types

PERIOD = timedelta(days=30)


def subscription(status: Any = "active", plan: str = "pro", sub: str = "sub_1", **kw: Any) -> c.RecordSubscription:
    return c.RecordSubscription(account_id=ACCT, stripe_subscription=sub, plan=plan, status=status, **kw)


def invoice(s: Scenario, invoice_id: str = "in_1", plan: str = "pro", start: datetime | None = None,
            sub: str = "sub_1") -> c.GrantPlanAllowance:
    begins = start or s.now
    return c.GrantPlanAllowance(account_id=ACCT, invoice_id=invoice_id, plan=plan, period_start=begins,
                                period_end=begins + PERIOD, stripe_subscription=sub)


def subscribed() -> Scenario:
    s = free_account()
    s.given(subscription("incomplete"), invoice(s))
    return s


def test_the_first_paid_invoice_moves_the_account_to_its_plan_with_its_allowance() -> None:
    s = free_account()
    e = only(s.when(subscription("incomplete", current_period_end=s.now + PERIOD)), SubscriptionChanged)
    assert (e.plan, e.status, e.amount_ucr) == ("pro", "incomplete", 0)
    assert s.state.plan == "free"  # the plan changes when it is paid
    events = s.when(invoice(s))
    assert types(events) == ["PlanChanged", "AllowanceGranted"]
    assert (only(events, PlanChanged).old_plan, only(events, PlanChanged).new_plan) == ("free", "pro")
    a = only(events, AllowanceGranted)
    assert (a.amount_ucr, a.plan, a.expires_at, a.stripe_invoice, a.stripe_subscription, a.cycle) == (
        25 * C, "pro", s.now + PERIOD, "in_1", "sub_1", 0)
    assert s.state.subscription == Subscription("sub_1", "pro", "incomplete", s.now + PERIOD, False, "in_1")


def test_a_renewal_resets_the_allowance_without_rollover_and_leaves_purchases_alone() -> None:
    s = subscribed()
    s.given(purchase("starter"))  # 10 purchased credits
    bought = grant_of(s, CreditsPurchased)
    first = grant_of(s, AllowanceGranted)
    s.given(meter("email", 3000))  # 3 credits: the signup promotion's first (it expires), then allowance
    s.advance(PERIOD)
    events = s.when(invoice(s, "in_2"))
    assert "AllowanceGranted" in types(events)
    expired = [e for e in events if isinstance(e, GrantExpired)]
    assert [e.grant_id for e in expired if e.source == "allowance"] == [first]
    assert s.state.grants[first].remaining_ucr == 0
    assert s.state.grants[bought].remaining_ucr == 10 * C  # purchased credits untouched
    renewed = only(events, AllowanceGranted)
    assert (renewed.amount_ucr, renewed.cycle, renewed.stripe_invoice) == (25 * C, 1, "in_2")
    assert s.state.balance_ucr == 35 * C


def test_the_same_invoice_twice_grants_once() -> None:
    s = subscribed()
    before = s.state
    assert s.when(invoice(s)) == []
    assert s.state == before


def test_the_calendar_allowance_is_refused_while_stripe_pays_the_plan() -> None:
    s = subscribed()
    s.advance(PERIOD + DAY)
    s.refused(c.GrantAllowance(account_id=ACCT, cycle=1), InvalidState)


def test_an_ended_subscription_goes_back_to_the_default_plan_and_the_calendar_resumes() -> None:
    s = subscribed()
    e = only(s.when(subscription(cancel_at_period_end=True)), SubscriptionChanged)
    assert e.cancel_at_period_end and s.state.plan == "pro"  # until the period ends
    s.advance(PERIOD)
    events = s.when(subscription("canceled"))
    assert types(events) == ["SubscriptionChanged", "PlanChanged"]
    assert only(events, PlanChanged).new_plan == "free" and s.state.plan == "free"
    assert s.state.subscription is not None and not s.state.subscription.live
    assert s.state.subscription.last_invoice == "in_1"
    assert s.when(subscription("canceled")) == []  # repeated
    assert s.when(subscription("active")) == []  # a late update of an ended subscription
    s.refused(invoice(s, "in_late"), InvalidState)
    s.advance(DAY)
    s.when(c.GrantAllowance(account_id=ACCT, cycle=1))  # the free plan's calendar again (no credits here)


def test_a_new_subscription_after_the_old_one_ended_starts_again() -> None:
    s = subscribed()
    s.given(subscription("canceled"))
    s.advance(DAY)
    events = s.when(invoice(s, "in_9", plan="team", sub="sub_2"))
    assert only(events, PlanChanged).new_plan == "team"
    assert s.state.subscription == Subscription("sub_2", "team", "active", s.now + PERIOD, False, "in_9")


def test_an_older_subscription_ending_after_a_newer_one_took_over_changes_nothing() -> None:
    s = subscribed()
    s.given(subscription("active", plan="team", sub="sub_2"), invoice(s, "in_2", plan="team", sub="sub_2"))
    assert s.state.plan == "team"
    assert s.when(subscription("canceled", sub="sub_1")) == []
    assert s.state.plan == "team"


def test_an_upgrade_paid_mid_period_expires_the_old_allowance() -> None:
    s = subscribed()
    s.advance(timedelta(days=10))
    events = s.when(invoice(s, "in_up", plan="team"))
    assert types(events) == ["PlanChanged", "GrantExpired", "AllowanceGranted"]
    assert only(events, GrantExpired).expired_ucr == 25 * C
    assert s.state.plan == "team" and s.state.subscription is not None and s.state.subscription.plan == "team"


def test_the_allowance_pays_debt_first() -> None:
    s = free_account()
    s.given(meter("email", 8000))  # 5 signup credits, 3 in debt
    events = s.when(invoice(s))
    assert only(events, DebtSettled).settled_ucr == 3 * C
    assert (s.state.debt_ucr, s.state.balance_ucr) == (0, 22 * C)


def test_bad_invoices_and_plans_are_refused() -> None:
    s = free_account()
    s.refused(subscription(plan="platinum"), UnknownPlan)
    s.refused(invoice(s, plan="platinum"), UnknownPlan)
    s.refused(c.GrantPlanAllowance(account_id=ACCT, invoice_id="in_1", plan="pro", period_start=s.now,
                                   period_end=s.now, stripe_subscription="sub_1"), InvalidRequest)
    s.refused(invoice(s, start=s.now - PERIOD - DAY), InvalidState)  # a period already over
