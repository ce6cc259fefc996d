"""An auto-refill's outcome through Stripe's webhook: ``payment_intent.succeeded`` and the worker's
synchronous answer land the refill once between them, however often Stripe delivers; a decline
(``payment_intent.payment_failed``) records one failure and no credits."""

from __future__ import annotations

import asyncio

import httpx

from ledger import commands as c
from ledger.api.runtime import Runtime
from ledger.billing.auto_refill import charge_refill
from ledger.events import AutoRefillFailed, CreditsPurchased
from ledger.service import Ledger
from ledger.testing.stripe import StripeStandIn
from tests.ledger.api.conftest import OpenApiAccount
from tests.ledger.api.stripe_helpers import deliver, held

C = 1_000_000


async def armed(ledger: Ledger, standin: StripeStandIn, account: str, token: str) -> None:
    """Refill 20 credits below 5 with the card ``token``; then spend below the threshold."""
    await ledger.execute(c.GrantCredits(account_id=account, amount_ucr=6 * C, source="purchase", reason="t"))
    await ledger.execute(c.ConfigureAutoRefill(account_id=account, enabled=True, threshold_ucr=5 * C,
                                               amount_ucr=20 * C))
    client = standin.client()
    customer = await asyncio.to_thread(client.v1.customers.create, params={"email": "ops@example.com"})
    pm = await asyncio.to_thread(client.v1.payment_methods.attach, token, params={"customer": customer.id})
    await ledger.execute(c.SavePaymentMethod(account_id=account, stripe_customer=customer.id, payment_method=pm.id))
    await ledger.execute(c.Meter(account_id=account, operation="email", quantity=2_000))  # 2 credits: 4 left


async def test_a_refill_paid_lands_once_between_the_worker_and_the_webhook(
        client: httpx.AsyncClient, api_account: OpenApiAccount, runtime: Runtime, ledger: Ledger,
        stripe_standin: StripeStandIn) -> None:
    a = await api_account(prefix="refill-hook")
    await armed(ledger, stripe_standin, a.id, "pm_card_visa")
    crossing = (await ledger.balance(a.id)).version
    with held(stripe_standin):
        # The worker lands it from Stripe's answer; Stripe's event, delivered four times at once,
        # builds the same command from the same PaymentIntent: replays, not a second refill.
        result = await charge_refill(ledger, runtime.gateway, a.id, crossing)
        succeeded = [e for e in stripe_standin.events("payment_intent.succeeded")
                     if e["data"]["object"]["metadata"].get("account") == a.id]
        assert len(succeeded) == 1 and result.status == "paid", result
        sent = await deliver(stripe_standin, succeeded[0]["id"], times=4, concurrently=True)
    assert [d.status for d in sent] == [200] * 4
    assert (await ledger.balance(a.id)).balance_ucr == 24 * C
    refills = [e for e in await ledger.entries(a.id, limit=100)
               if isinstance(e, CreditsPurchased) and e.kind == "auto_refill"]
    assert len(refills) == 1 and refills[0].crossing == crossing


async def test_a_declined_refill_is_one_failure_and_no_credits(
        client: httpx.AsyncClient, api_account: OpenApiAccount, runtime: Runtime, ledger: Ledger,
        stripe_standin: StripeStandIn) -> None:
    a = await api_account(prefix="refill-no")
    await armed(ledger, stripe_standin, a.id, "pm_card_chargeDeclined")
    crossing = (await ledger.balance(a.id)).version
    with held(stripe_standin):
        await charge_refill(ledger, runtime.gateway, a.id, crossing)
        failed = [e for e in stripe_standin.events("payment_intent.payment_failed")
                  if e["data"]["object"]["metadata"].get("account") == a.id]
        assert len(failed) == 1
        sent = await deliver(stripe_standin, failed[0]["id"], times=3, concurrently=True)
    assert [d.status for d in sent] == [200] * 3
    assert (await ledger.balance(a.id)).balance_ucr == 4 * C
    failures = [e for e in await ledger.entries(a.id, limit=100) if isinstance(e, AutoRefillFailed)]
    assert len(failures) == 1
