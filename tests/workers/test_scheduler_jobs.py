"""The scheduler's other jobs: monthly allowances, grant and reservation expiry, spend summaries."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.service import Ledger
from tests.ledger.conftest import T0
from tests.workers.conftest import drain
from workers.runner import Background

CREDIT = 1_000_000


async def types(ledger: Ledger, account_id: str) -> list[str]:
    async with ledger.engine.connect() as conn:
        return list((await conn.execute(text(
            "SELECT type FROM events WHERE account_id = :a ORDER BY version"), {"a": account_id})).scalars())


async def test_allowance_expiry_and_summaries_each_happen_once(background: Background, wledger: Ledger,
                                                               clock: ManualClock) -> None:
    await wledger.execute(c.OpenAccount(account_id="pro", name="p", plan="pro"))
    await wledger.execute(c.GrantCredits(account_id="pro", amount_ucr=3 * CREDIT, source="promotion", reason="t",
                                         expires_at=T0 + timedelta(days=2)))
    held = await wledger.execute(c.Reserve(account_id="pro", operation="email", quantity=1000, ttl_s=3600))
    assert held.events
    await wledger.execute(c.Meter(account_id="pro", operation="email", quantity=2000))
    background.start_worker(threads=2)
    sched = background.scheduler(wledger)

    clock.set(T0 + timedelta(days=3))  # the hold and the promotion have expired; yesterday had no usage
    for _ in range(2):
        await sched.tick()
        drain(background)
    after_expiry = await types(wledger, "pro")
    assert after_expiry.count("GrantExpired") == 1
    assert after_expiry.count("CreditsReleased") == 1

    clock.set(T0 + timedelta(days=30, minutes=5))    # 1 Dec: cycle 1 of the pro plan's allowance
    for _ in range(3):
        await sched.tick()
        drain(background)
    events = await types(wledger, "pro")
    assert events.count("AllowanceGranted") == 2, events  # cycle 0 at opening, cycle 1 now, once
    b = await wledger.balance("pro")
    assert b.by_source["allowance"] > 0


async def test_daily_and_weekly_summaries_once(background: Background, wledger: Ledger, clock: ManualClock) -> None:
    await wledger.execute(c.OpenAccount(account_id="sum", name="s", plan="free"))
    await wledger.execute(c.Meter(account_id="sum", operation="email", quantity=3000))  # 3 credits on 1 Nov
    background.start_worker(threads=2)
    sched = background.scheduler(wledger)
    clock.set(T0 + timedelta(days=1))  # 2 Nov: yesterday's summary
    for _ in range(2):
        await sched.tick()
        drain(background)
    clock.set(T0 + timedelta(days=8))  # 9 Nov: the ISO week of 26 Oct - 1 Nov (W44) is summarised
    for _ in range(2):
        await sched.tick()
        drain(background)
    notes = await wledger.notifications("sum")
    summaries = sorted((e.kind, e.period, e.spent_ucr) for _, e in notes  # type: ignore[union-attr]
                       if e.kind.endswith("summary"))  # type: ignore[union-attr]
    assert summaries == [("daily_summary", "D2026-11-01", 3 * CREDIT), ("weekly_summary", "W2026-44", 3 * CREDIT)]


async def test_a_plan_paid_through_stripe_gets_no_calendar_allowance(background: Background, wledger: Ledger,
                                                                     clock: ManualClock) -> None:
    """Its allowance comes with each paid invoice: the monthly job leaves it alone (and the domain
    would refuse it), while a plan not paid through Stripe still gets its calendar cycle."""
    await wledger.execute(c.OpenAccount(account_id="stripe-pro", name="s", plan="free"))
    await wledger.execute(c.OpenAccount(account_id="calendar-pro", name="p", plan="pro"))
    await wledger.execute(c.RecordSubscription(account_id="stripe-pro", stripe_subscription="sub_1", plan="pro",
                                               status="active"))
    await wledger.execute(c.GrantPlanAllowance(account_id="stripe-pro", invoice_id="in_1", plan="pro",
                                               period_start=T0, period_end=T0 + timedelta(days=31),
                                               stripe_subscription="sub_1"))
    background.start_worker(threads=2)
    sched = background.scheduler(wledger)
    clock.set(T0 + timedelta(days=30, minutes=5))  # cycle 1 by the calendar, still in the paid period
    tick = await sched.tick()
    drain(background)
    allowances = [cmd.account_id for cmd in tick.commands if isinstance(cmd, c.GrantAllowance)]
    assert allowances == ["calendar-pro"]
    assert (await types(wledger, "stripe-pro")).count("AllowanceGranted") == 1
    assert (await types(wledger, "calendar-pro")).count("AllowanceGranted") == 2
