"""Auto-refill through the store on PostgreSQL: the rule, the card and the breaker persist in
``accounts.settings``; the crossings are found in the log; two workers racing on one crossing
make one request; a payment reported twice lands once; verify agrees."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.errors import AutoRefillRefused, LedgerError
from ledger.events import AutoRefillRequested, CreditsPurchased
from ledger.refill import crossings
from ledger.service import Ledger
from ledger.verify import verify_account
from tests.ledger.conftest import OpenAccount

C = 1_000_000


async def _crossings(engine: AsyncEngine, account_id: str, threshold: int) -> list[int]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT version, amount_ucr, balance_after_ucr FROM events WHERE account_id = :a ORDER BY version"),
            {"a": account_id})).all()
    return crossings(threshold, [tuple(r) for r in rows])


async def _armed(ledger: Ledger, open_account: OpenAccount, cap: int | None = None) -> str:
    a = await open_account(credits_ucr=6 * C)
    await ledger.execute(c.ConfigureAutoRefill(account_id=a, enabled=True, threshold_ucr=5 * C, amount_ucr=20 * C,
                                               daily_cap_ucr=cap))
    await ledger.execute(c.SavePaymentMethod(account_id=a, stripe_customer="cus_1", payment_method="pm_1"))
    return a


async def test_one_request_per_crossing_and_one_landing_per_payment(
        ledger: Ledger, engine: AsyncEngine, open_account: OpenAccount) -> None:
    a = await _armed(ledger, open_account, cap=40 * C)
    spent = await ledger.execute(c.Meter(account_id=a, operation="email", quantity=2000))  # 6 -> 4 credits
    found = await _crossings(engine, a, 5 * C)
    crossing = (await ledger.balance(a)).version
    assert found[-1] == crossing and len(spent.events) == 1  # (the first: the signup credits burned)
    # Two workers racing on the same crossing (their own keys): one request, one typed refusal.
    results = await ledger.execute_many([
        c.RequestAutoRefill(account_id=a, crossing=crossing, idempotency_key=f"worker-{i}") for i in range(2)])
    requested = [r for r in results if not isinstance(r, LedgerError)]
    refusals = [r for r in results if isinstance(r, AutoRefillRefused)]
    assert len(requested) == 1 and len(refusals) == 1 and refusals[0].reason == "pending"
    e = requested[0].events[0]
    assert isinstance(e, AutoRefillRequested) and (e.credits_ucr, e.cents) == (20 * C, 2000)
    # The synchronous answer and the webhook both report the payment: credited once.
    landed = await asyncio.gather(*(ledger.execute(c.RecordPurchase(
        account_id=a, kind="auto_refill", cents_paid=2000, crossing=crossing, stripe_payment_intent="pi_1",
        idempotency_key=key)) for key in ("refill:sync", "stripe:evt_pi_succeeded")))
    assert sorted(len(r.events) for r in landed) == [0, 1]
    assert sum(isinstance(ev, CreditsPurchased) for r in landed for ev in r.events) == 1
    assert (await ledger.balance(a)).balance_ucr == 24 * C
    with pytest.raises(AutoRefillRefused):
        await ledger.execute(c.RequestAutoRefill(account_id=a, crossing=crossing))
    assert (await verify_account(engine, a)).mismatches == []


async def test_the_breaker_and_the_rule_persist(ledger: Ledger, engine: AsyncEngine,
                                                open_account: OpenAccount) -> None:
    a = await _armed(ledger, open_account)
    for n in range(3):
        await ledger.execute(c.Meter(account_id=a, operation="email", quantity=1500))
        version = (await ledger.balance(a)).version
        await ledger.execute(c.RequestAutoRefill(account_id=a, crossing=version))
        await ledger.execute(c.RecordAutoRefillFailure(account_id=a, crossing=version, reason="card_declined",
                                                       decline_code="generic_decline"))
        assert (await verify_account(engine, a)).mismatches == [], n
    await ledger.execute(c.Meter(account_id=a, operation="email", quantity=10))
    version = (await ledger.balance(a)).version
    with pytest.raises(AutoRefillRefused) as refused:
        await ledger.execute(c.RequestAutoRefill(account_id=a, crossing=version))
    assert (refused.value.status, refused.value.reason) == (409, "breaker_open")
    async with engine.connect() as conn:
        settings = await conn.scalar(text("SELECT settings FROM accounts WHERE account_id = :a"), {"a": a})
    assert settings["auto_refill"]["failures"] == 3 and settings["auto_refill"]["payment_method"] == "pm_1"
    await ledger.execute(c.SavePaymentMethod(account_id=a, stripe_customer="cus_1", payment_method="pm_2"))
    await ledger.execute(c.RequestAutoRefill(account_id=a, crossing=version))
    assert (await verify_account(engine, a)).mismatches == []
