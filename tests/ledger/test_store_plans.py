"""Plans paid through Stripe on PostgreSQL: each paid invoice's allowance once (however many
deliveries), no rollover, purchased credits untouched, back to the default plan when it ends;
the subscription persists in ``accounts.settings`` and verify agrees."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.errors import InvalidState
from ledger.events import AllowanceGranted
from ledger.service import Ledger
from ledger.verify import verify_account
from tests.ledger.conftest import OpenAccount

C = 1_000_000
PERIOD = timedelta(days=30)


def paid(a: str, invoice_id: str, clock: ManualClock, plan: str = "pro") -> c.GrantPlanAllowance:
    now = clock.now()
    return c.GrantPlanAllowance(account_id=a, invoice_id=invoice_id, plan=plan, period_start=now,
                                period_end=now + PERIOD, stripe_subscription="sub_1",
                                idempotency_key=f"stripe:invoice:{invoice_id}")


async def test_renewals_cancellation_and_verify(ledger: Ledger, engine: AsyncEngine, clock: ManualClock,
                                                open_account: OpenAccount) -> None:
    a = await open_account(credits_ucr=10 * C)  # 10 purchased credits
    await ledger.execute(c.RecordSubscription(account_id=a, stripe_subscription="sub_1", plan="pro", status="active",
                                              current_period_end=clock.now() + PERIOD))
    # Five deliveries of invoice.paid at once, under the invoice's key: one allowance.
    results = await asyncio.gather(*(ledger.execute(paid(a, "in_1", clock)) for _ in range(5)))
    assert sum(isinstance(e, AllowanceGranted) for r in results if not r.replayed for e in r.events) == 1
    b = await ledger.balance(a)
    assert (b.plan, b.balance_ucr, b.by_source["allowance"]) == ("pro", 35 * C, 25 * C)
    await ledger.execute(c.Meter(account_id=a, operation="email", quantity=5000))  # 5 of the allowance
    # Renewed before the old period's allowance expired: no rollover, the purchase untouched.
    clock.advance(PERIOD - timedelta(hours=1))
    await ledger.execute(paid(a, "in_2", clock))
    b = await ledger.balance(a)
    assert (b.balance_ucr, b.by_source["allowance"], b.by_source["purchase"]) == (35 * C, 25 * C, 10 * C)
    # The same invoice under another key (another path to it) grants nothing more.
    again = await ledger.execute(paid(a, "in_2", clock).model_copy(update={"idempotency_key": "other"}))
    assert again.events == ()
    await ledger.execute(c.RecordSubscription(account_id=a, stripe_subscription="sub_1", plan="pro",
                                              status="canceled"))
    assert (await ledger.balance(a)).plan == "free"
    with pytest.raises(InvalidState):  # a late invoice of the ended subscription
        await ledger.execute(paid(a, "in_3", clock))
    assert (await verify_account(engine, a)).mismatches == []
