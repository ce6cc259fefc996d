"""Charging auto-refills through the Stripe stand-in, on PostgreSQL: one PaymentIntent per crossing
however many workers race, credits only for a payment that succeeded, a declining card stopped
after three failures, the daily cap, debt paid first."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
import stripe

from ledger import commands as c
from ledger import rows
from ledger.billing.auto_refill import charge_refill, refill_before_pausing, refill_if_running_out
from ledger.billing.gateway import StripeGateway
from ledger.billing.refills import outcome_command
from ledger.clock import ManualClock
from ledger.errors import PaymentRequired
from ledger.events import CreditsPurchased, DebtSettled
from ledger.service import Ledger
from ledger.testing.stripe import StripeStandIn
from tests.ledger.conftest import OpenAccount

C = 1_000_000
EMAIL = 1_000  #: what an email costs on the test card, in µcr


@pytest.fixture
def standin() -> Iterator[StripeStandIn]:
    with StripeStandIn() as s:  # no webhook endpoint: the synchronous answer alone lands refills
        yield s


@pytest.fixture
def gateway(standin: StripeStandIn) -> StripeGateway:
    return StripeGateway(api_key=standin.api_key, webhook_secret=standin.webhook_secret, api_base=standin.base_url)


def saved_card(standin: StripeStandIn, token: str) -> tuple[str, str]:
    client = standin.client()
    customer = client.v1.customers.create(params={"email": "ops@example.com"})
    pm = client.v1.payment_methods.attach(token, params={"customer": customer.id})
    return customer.id, pm.id


def payment_intents(standin: StripeStandIn, customer: str) -> list[stripe.PaymentIntent]:
    return list(standin.client().v1.payment_intents.list(params={"customer": customer, "limit": 100}).data)


async def armed(ledger: Ledger, open_account: OpenAccount, standin: StripeStandIn, *, token: str = "pm_card_visa",
                cap: int | None = None, credits_ucr: int = 6 * C) -> tuple[str, str]:
    """An account holding ``credits_ucr`` that refills 20 credits below 5, paying with ``token``."""
    a = await open_account(credits_ucr=credits_ucr)
    await ledger.execute(c.ConfigureAutoRefill(account_id=a, enabled=True, threshold_ucr=5 * C, amount_ucr=20 * C,
                                               daily_cap_ucr=cap))
    customer, pm = saved_card(standin, token)
    await ledger.execute(c.SavePaymentMethod(account_id=a, stripe_customer=customer, payment_method=pm))
    return a, customer


async def cross(ledger: Ledger, account_id: str) -> int:
    """Spend the balance below the threshold; the crossing (the version that did it)."""
    balance = (await ledger.balance(account_id)).balance_ucr
    await ledger.execute(c.Meter(account_id=account_id, operation="email", quantity=(balance - 4 * C) // EMAIL))
    return (await ledger.balance(account_id)).version


async def test_workers_racing_on_one_crossing_make_one_payment_and_one_landing(
        ledger: Ledger, open_account: OpenAccount, standin: StripeStandIn, gateway: StripeGateway) -> None:
    a, customer = await armed(ledger, open_account, standin)
    crossing = await cross(ledger, a)
    results = await asyncio.gather(*(charge_refill(ledger, gateway, a, crossing) for _ in range(4)))
    # Each racer may see the request pending and ask Stripe: under one key, for one PaymentIntent.
    assert "paid" in {r.status for r in results} <= {"paid", "refused", "settled"}, results
    # Once more, after it landed: nothing new asked of Stripe.
    assert (await charge_refill(ledger, gateway, a, crossing)).status in ("refused", "settled")
    pis = payment_intents(standin, customer)
    assert len(pis) == 1 and pis[0].status == "succeeded" and pis[0].amount == 2000
    assert (await ledger.balance(a)).balance_ucr == 24 * C
    purchases = [e for e in await ledger.entries(a, limit=100) if isinstance(e, CreditsPurchased)]
    assert [(p.kind, p.crossing, p.stripe_payment_intent) for p in purchases if p.kind == "auto_refill"] == [
        ("auto_refill", crossing, pis[0].id)]
    assert purchases[0].receipt_url  # the charge's receipt, kept on the entry


async def test_a_declining_card_fails_once_per_crossing_and_stops_after_three(
        ledger: Ledger, open_account: OpenAccount, standin: StripeStandIn, gateway: StripeGateway) -> None:
    a, customer = await armed(ledger, open_account, standin, token="pm_card_chargeDeclined", credits_ucr=40 * C)
    for n in range(1, 4):
        crossing = await cross(ledger, a)
        outcomes = await asyncio.gather(*(charge_refill(ledger, gateway, a, crossing) for _ in range(2)))
        assert "failed" in {o.status for o in outcomes} <= {"failed", "refused", "settled"}, outcomes
        assert rows.auto_refill((await ledger.account(a)).settings).failures == n
        assert len(payment_intents(standin, customer)) == n  # one per crossing, retries included
        await ledger.execute(c.GrantCredits(account_id=a, amount_ucr=10 * C, source="promotion", reason="top up"))
    crossing = await cross(ledger, a)
    stopped = await charge_refill(ledger, gateway, a, crossing)
    assert (stopped.status, stopped.detail) == ("refused", "breaker_open")
    assert len(payment_intents(standin, customer)) == 3
    assert (await ledger.balance(a)).balance_ucr == 4 * C  # no credits without a payment
    # A new card closes the breaker: the next crossing is charged to it.
    new_customer, pm = saved_card(standin, "pm_card_visa")
    await ledger.execute(c.SavePaymentMethod(account_id=a, stripe_customer=new_customer, payment_method=pm))
    await ledger.execute(c.Meter(account_id=a, operation="email", quantity=C // EMAIL))
    assert (await charge_refill(ledger, gateway, a, (await ledger.balance(a)).version)).status == "paid"
    assert (await ledger.balance(a)).balance_ucr == 23 * C


async def test_a_card_that_needs_its_owner_credits_nothing(
        ledger: Ledger, open_account: OpenAccount, standin: StripeStandIn, gateway: StripeGateway) -> None:
    a, _ = await armed(ledger, open_account, standin, token="pm_card_authenticationRequired")
    crossing = await cross(ledger, a)
    result = await charge_refill(ledger, gateway, a, crossing)
    assert result.status == "failed" and "authentication_required" in result.detail
    assert (await ledger.balance(a)).balance_ucr == 4 * C


async def test_the_daily_cap_is_never_exceeded(
        ledger: Ledger, open_account: OpenAccount, standin: StripeStandIn, gateway: StripeGateway) -> None:
    a, customer = await armed(ledger, open_account, standin, cap=40 * C)
    statuses = []
    for _ in range(3):
        crossing = await cross(ledger, a)
        statuses.append(await charge_refill(ledger, gateway, a, crossing))
    assert [s.status for s in statuses] == ["paid", "paid", "refused"] and statuses[2].detail == "daily_cap"
    assert len(payment_intents(standin, customer)) == 2


async def test_a_refill_pays_debt_first(
        ledger: Ledger, open_account: OpenAccount, standin: StripeStandIn, gateway: StripeGateway) -> None:
    a, _ = await armed(ledger, open_account, standin)
    await ledger.execute(c.Meter(account_id=a, operation="email", quantity=9 * C // EMAIL))  # 6 - 9: 3 in debt
    crossing = (await ledger.balance(a)).version
    assert (await charge_refill(ledger, gateway, a, crossing)).status == "paid"
    entries = await ledger.entries(a, limit=5)
    assert any(isinstance(e, DebtSettled) and e.settled_ucr == 3 * C for e in entries)
    balance = await ledger.balance(a)
    assert (balance.balance_ucr, balance.debt_ucr) == (17 * C, 0)


def test_the_webhook_and_the_worker_build_the_same_command(standin: StripeStandIn) -> None:
    """The outcome is a function of the PaymentIntent alone (with its charge expanded)."""
    customer, pm = saved_card(standin, "pm_card_visa")
    client = standin.client()
    created = client.v1.payment_intents.create(params={
        "amount": 2000, "currency": "usd", "customer": customer, "payment_method": pm, "confirm": True,
        "off_session": True, "expand": ["latest_charge"],
        "metadata": {"source": "credit-ledger", "kind": "auto_refill", "account": "a-1", "crossing": "7",
                     "credits_ucr": str(20 * C)}})
    again = client.v1.payment_intents.retrieve(created.id, params={"expand": ["latest_charge"]})
    first, second = outcome_command(created.to_dict()), outcome_command(again.to_dict())
    assert isinstance(first, c.RecordPurchase) and first == second
    assert first.fingerprint() == second.fingerprint()


async def test_an_unpaid_deployment_hour_tries_one_refill_before_pausing(
        ledger: Ledger, clock: ManualClock, open_account: OpenAccount, standin: StripeStandIn,
        gateway: StripeGateway) -> None:
    paid, _ = await armed(ledger, open_account, standin)
    declined, declining = await armed(ledger, open_account, standin, token="pm_card_chargeDeclined")
    for a in (paid, declined):  # hour 0 of an H100: 6 - 3.99 = 2.01 left, too little for hour 1
        await ledger.execute(c.StartDeployment(account_id=a, deployment_id=f"{a}-d", instance_type="gpu-l"))
    clock.advance(timedelta(hours=1))
    for a in (paid, declined):
        hour = c.ChargeDeploymentHour(account_id=a, deployment_id=f"{a}-d", hour_index=1,
                                      idempotency_key=f"deployment:{a}-d:hour:1")
        with pytest.raises(PaymentRequired):
            await ledger.execute(hour.model_copy(update={"pause_if_unpaid": False}))
        await refill_before_pausing(ledger, gateway, hour)
    # Refilled, then charged: 2.01 + 20 - 3.99.
    (running,) = await ledger.deployments(paid)
    assert (running.status, running.hours_charged) == ("running", 2)
    assert (await ledger.balance(paid)).balance_ucr == 18_020_000
    # The card declined: one attempt, then the hour pauses the deployment, charging nothing.
    (paused,) = await ledger.deployments(declined)
    assert (paused.status, paused.hours_charged) == ("paused", 1)
    assert len(payment_intents(standin, declining)) == 1
    assert (await ledger.balance(declined)).balance_ucr == 2_010_000


async def test_the_forecast_refills_before_the_threshold_is_crossed(
        ledger: Ledger, open_account: OpenAccount, standin: StripeStandIn, gateway: StripeGateway) -> None:
    """10 credits above a 1-credit threshold: an L4 (0.80/h) runs them out in 12.5 h, inside a
    24-hour forecast; a small CPU (0.05/h) in 200 h, outside it."""
    fast, slow = await open_account(credits_ucr=10 * C), await open_account(credits_ucr=10 * C)
    for a, instance in ((fast, "gpu-s"), (slow, "cpu-s")):
        await ledger.execute(c.ConfigureAutoRefill(account_id=a, enabled=True, threshold_ucr=1 * C,
                                                   amount_ucr=20 * C, runout_hours=24))
        customer, pm = saved_card(standin, "pm_card_visa")
        await ledger.execute(c.SavePaymentMethod(account_id=a, stripe_customer=customer, payment_method=pm))
        await ledger.execute(c.StartDeployment(account_id=a, deployment_id=f"{a}-d", instance_type=instance))
    assert (await refill_if_running_out(ledger, gateway, slow)).detail == "not_running_out"
    assert (await refill_if_running_out(ledger, gateway, fast)).status == "paid"
    assert (await ledger.balance(fast)).balance_ucr == 10 * C - 800_000 + 20 * C
    # Read again with nothing new in between: nothing more is asked.
    again = await refill_if_running_out(ledger, gateway, fast)
    assert again.status in ("refused", "settled") and (await ledger.balance(fast)).balance_ucr == 29_200_000
