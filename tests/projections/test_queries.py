"""Reading the history and activity models: pages newest first with a stable cursor, their
freshness, and what each kind of activity says (a reservation's returned credits included)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import UUID

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.errors import InvalidRequest, UnknownAccount
from ledger.events import CreditsPurchased, CreditsReleased, CreditsReserved, UsageMetered
from ledger.service import Ledger
from projections.history import HISTORY
from projections.queries.activities import Activity, activities
from projections.queries.history import Execution, deployments, executions
from tests.projections.conftest import OpenAccount
from tests.projections.folding import fold_all


async def _all_activities(engine: AsyncEngine, account: str, kind: str | None = None) -> list[Activity]:
    return list((await activities(engine, account, limit=500, kind=kind)).rows)


async def _last_position(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT max(position) FROM events"))).scalar_one())


async def test_before_the_projectors_run_a_read_is_empty_and_says_how_late_it_is(
        engine: AsyncEngine, ledger: Ledger, open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=10**9)
    await ledger.execute(c.Meter(account_id=account, operation="email", quantity=3))

    page = await executions(engine, account)
    feed = await activities(engine, account)
    assert (page.rows, page.has_more, page.next_before) == ([], False, None)
    assert feed.rows == []
    # Nothing folded yet, and events are waiting (recorded at the test clock's T0, in the past).
    assert page.freshness.as_of_position == 0 and page.freshness.lag_ms > 0
    assert feed.freshness.as_of_position == 0 and feed.freshness.lag_ms > 0

    await fold_all(engine)
    page = await executions(engine, account)
    assert [e.operation for e in page.rows] == ["email"]
    assert page.freshness.as_of_position == await _last_position(engine)
    assert page.freshness.lag_ms == 0


async def test_an_unknown_account_and_bad_paging_are_refused(engine: AsyncEngine, open_account: OpenAccount) -> None:
    account = await open_account()
    with pytest.raises(UnknownAccount):
        await executions(engine, "nobody-here")
    with pytest.raises(UnknownAccount):
        await activities(engine, "nobody-here")
    with pytest.raises(UnknownAccount):
        await deployments(engine, "nobody-here")
    for limit, offset in ((0, 0), (501, 0), (10, -1)):
        with pytest.raises(InvalidRequest):
            await executions(engine, account, limit=limit, offset=offset)
        with pytest.raises(InvalidRequest):
            await activities(engine, account, limit=limit, offset=offset)
    with pytest.raises(InvalidRequest):
        await activities(engine, account, kind="burn")
    with pytest.raises(InvalidRequest):
        await executions(engine, account, before=-1)


async def test_a_reservation_settled_for_less_gives_back_a_positive_refund_named_by_the_rule(
        engine: AsyncEngine, ledger: Ledger, open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=10_000 * 10**6)
    before = (await ledger.balance(account, recent=0)).balance_ucr
    hold = (await ledger.execute(c.Reserve(account_id=account, operation="training_h100_per_minute",
                                           quantity=60))).events[-1]
    assert isinstance(hold, CreditsReserved)
    settle = await ledger.execute(c.Settle(account_id=account, reservation_id=hold.reservation_id, quantity=20))
    used = next(e for e in settle.events if isinstance(e, UsageMetered))
    assert 0 < used.cost_ucr < hold.held_ucr
    await fold_all(engine)

    feed = [a for a in await _all_activities(engine, account) if a.reservation_id == hold.reservation_id]
    refund, reservation = feed  # newest first
    assert (reservation.kind, reservation.operation, reservation.amount_ucr) == (
        "reservation", "training_h100_per_minute", -hold.held_ucr)
    assert (refund.kind, refund.operation) == ("refund", "training_refund_h100")
    assert refund.amount_ucr == hold.held_ucr - used.cost_ucr > 0
    # The feed's entries for the reservation add up to what it cost, as the balance says.
    assert reservation.amount_ucr + refund.amount_ucr == -used.cost_ucr
    assert before - used.cost_ucr == (await ledger.balance(account, recent=0)).balance_ucr
    # A hold moves what is available, not the balance; the refund shows the balance once settled.
    release = next(e for e in settle.events if isinstance(e, CreditsReleased))
    assert reservation.balance_after_ucr == before
    assert (refund.entry_id, refund.balance_after_ucr) == (release.event_id, used.balance_after_ucr)
    # The settlement's usage is in the history (not the feed), with what it cost.
    assert not [a for a in await _all_activities(engine, account, "execution")
                if a.entry_id == used.event_id]
    (execution,) = [e for e in (await executions(engine, account)).rows if e.reservation_id == hold.reservation_id]
    assert (execution.entry_id, execution.cost_ucr, execution.duration_s) == (used.event_id, used.cost_ucr, 20 * 60)
    assert execution.execution_id == str(used.event_id)  # no attributed execution: the entry's id


async def test_a_released_and_an_expired_reservation_come_back_whole(
        engine: AsyncEngine, ledger: Ledger, clock: ManualClock, open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=100 * 10**6)
    released = (await ledger.execute(c.Reserve(account_id=account, operation="email", quantity=50))).events[-1]
    expired = (await ledger.execute(c.Reserve(account_id=account, operation="email", quantity=70, ttl_s=60))).events[-1]
    assert isinstance(released, CreditsReserved) and isinstance(expired, CreditsReserved)
    await ledger.execute(c.Release(account_id=account, reservation_id=released.reservation_id))
    clock.advance(timedelta(minutes=5))
    await ledger.execute(c.ExpireReservations(account_id=account))
    await fold_all(engine)

    refunds = {a.reservation_id: a for a in await _all_activities(engine, account, "refund")}
    assert refunds[released.reservation_id].amount_ucr == released.held_ucr
    assert refunds[released.reservation_id].detail["reason"] == "released"
    # Nothing was used: the balance after each is the balance all along.
    assert {a.balance_after_ucr for a in refunds.values()} == {(await ledger.balance(account, recent=0)).balance_ucr}
    assert refunds[expired.reservation_id].amount_ucr == expired.held_ucr
    assert refunds[expired.reservation_id].detail["reason"] == "expired"
    assert {a.operation for a in refunds.values()} == {"email_refund"}


async def test_purchases_grants_refunds_and_expiries_each_have_their_kind(
        engine: AsyncEngine, ledger: Ledger, clock: ManualClock, open_account: OpenAccount) -> None:
    account = await open_account()
    bought = (await ledger.execute(c.RecordPurchase(account_id=account, kind="pack", pack_id="builder",
                                                    cents_paid=5000, stripe_payment_intent="pi_1"))).events
    purchase = next(e for e in bought if isinstance(e, CreditsPurchased))
    await ledger.execute(c.GrantCredits(account_id=account, amount_ucr=7 * 10**6, source="promotion",
                                        expires_at=clock.now() + timedelta(days=1), reason="welcome"))
    await ledger.execute(c.IssueRefund(account_id=account, direction="clawback", purchase_id=purchase.event_id,
                                       amount_ucr=10**6, reason="asked"))
    await ledger.execute(c.IssueRefund(account_id=account, direction="credit", amount_ucr=3 * 10**6,
                                       reason="failed run"))
    clock.advance(timedelta(days=2))
    await ledger.execute(c.ExpireGrants(account_id=account))
    await fold_all(engine)

    feed = await _all_activities(engine, account)
    by_kind: dict[str, list[Activity]] = {}
    for a in feed:
        by_kind.setdefault(a.kind, []).append(a)
    (p,) = by_kind["purchase"]
    assert (p.entry_id, p.operation, p.amount_ucr) == (purchase.event_id, "builder", purchase.amount_ucr)
    assert purchase.amount_ucr == purchase.credits_ucr + purchase.bonus_ucr > 0
    assert (p.detail["cents_paid"], p.detail["bonus_ucr"]) == (5000, purchase.bonus_ucr)
    assert ("promotion", 7 * 10**6) in [(g.operation, g.amount_ucr) for g in by_kind["grant"]]
    assert sorted((r.operation, r.amount_ucr) for r in by_kind["refund"]) == [
        ("clawback", -(10**6)), ("credit", 3 * 10**6)]
    assert [r.detail["purchase_id"] for r in by_kind["refund"] if r.operation == "clawback"] == [
        str(purchase.event_id)]
    assert [(x.operation, x.amount_ucr) for x in by_kind["expiry"]] == [("promotion", -7 * 10**6)]
    # Newest first, and each entry's balance after is the ledger's.
    assert [a.version for a in feed] == sorted((a.version for a in feed), reverse=True)
    assert feed[0].kind == "expiry"
    assert feed[0].balance_after_ucr == (await ledger.balance(account, recent=0)).balance_ucr
    # ``kind`` filters.
    assert [a.entry_id for a in await _all_activities(engine, account, "purchase")] == [purchase.event_id]


async def test_deployment_history_sums_hours_and_credits(engine: AsyncEngine, ledger: Ledger, clock: ManualClock,
                                                          open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=10_000 * 10**6)
    await ledger.execute(c.StartDeployment(account_id=account, deployment_id="d1", instance_type="gpu-s"))
    clock.advance(timedelta(hours=1))
    await ledger.execute(c.ChargeDeploymentHour(account_id=account, deployment_id="d1", hour_index=1))
    await ledger.execute(c.StartDeployment(account_id=account, deployment_id="d2", instance_type="cpu-s"))
    await fold_all(engine)

    hourly = [e for e in (await executions(engine, account)).rows if e.deployment_id is not None]
    assert {(e.deployment_id, e.machine_type, e.duration_s) for e in hourly} == {
        ("d1", "gpu-s", 3600), ("d2", "cpu-s", 3600)}
    page = await deployments(engine, account)
    got = {d.deployment_id: (d.instance_type, d.hours, d.credits_ucr) for d in page.rows}
    assert got == {
        "d1": ("gpu-s", 2, sum(e.cost_ucr for e in hourly if e.deployment_id == "d1")),
        "d2": ("cpu-s", 1, sum(e.cost_ucr for e in hourly if e.deployment_id == "d2")),
    }
    first = await deployments(engine, account, limit=1)
    assert first.has_more and len(first.rows) == 1
    assert (await deployments(engine, account, limit=1, offset=1)).rows[0].deployment_id != first.rows[0].deployment_id


async def test_cursor_iteration_over_more_than_1000_entries_sees_each_once_while_writes_go_on(
        engine: AsyncEngine, ledger: Ledger, open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=10**9)
    await ledger.execute_many([c.Meter(account_id=account, operation="email", quantity=1 + i % 5,
                                       idempotency_key=f"pre-{i}") for i in range(1_100)])
    await fold_all(engine)
    existing = {e.entry_id for e in await _every_execution_by_offset(engine, account)}
    assert len(existing) == 1_100

    # Another task keeps appending usage and folding it; the reader waits for one round of it
    # between pages, so every page is read with new rows above the cursor.
    stop, wrote = asyncio.Event(), asyncio.Event()
    rounds = 0

    async def keep_writing() -> None:
        nonlocal rounds
        while not stop.is_set():
            await ledger.execute_many([c.Meter(account_id=account, operation="sms", quantity=1,
                                               idempotency_key=f"live-{rounds}-{j}") for j in range(7)])
            await fold_all(engine, [HISTORY])
            rounds += 1
            wrote.set()
            await asyncio.sleep(0)

    writer = asyncio.create_task(keep_writing())
    seen: list[UUID] = []
    try:
        before: int | None = None
        while True:
            wrote.clear()
            await wrote.wait()
            page = await executions(engine, account, limit=97, before=before)
            seen += [e.entry_id for e in page.rows]
            if page.next_before is None:
                break
            before = page.next_before
    finally:
        stop.set()
        await writer
    assert rounds >= 1_100 // 97  # writes went on between the pages
    assert len(seen) == len(set(seen)), "an entry was returned twice"
    assert existing <= set(seen), f"{len(existing - set(seen))} entries were never returned"
    total = len(await _every_execution_by_offset(engine, account))
    assert total > len(existing)


async def _every_execution_by_offset(engine: AsyncEngine, account: str) -> list[Execution]:
    rows: list[Execution] = []
    while True:
        page = await executions(engine, account, limit=500, offset=len(rows))
        rows += page.rows
        if not page.has_more:
            return rows
