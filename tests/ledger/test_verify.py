"""``verify`` re-derives every account from its events and names what was tampered with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.clock import HOUR, ManualClock, add_months
from ledger.db import make_engine
from ledger.events import Attribution, CreditsPurchased, CreditsReserved
from ledger.rate_cards import ensure_rate_card
from ledger.service import Ledger
from ledger.verify import verify, verify_account
from tests.ledger.conftest import T0

UCR = 1_000_000


@dataclass
class World:
    engine: AsyncEngine
    ledger: Ledger
    clock: ManualClock
    accounts: list[str]


async def _ok(ledger: Ledger, command: c.Command) -> None:
    await ledger.execute(command)


async def build_mix(ledger: Ledger, clock: ManualClock) -> list[str]:
    """Every kind of command across three accounts, including debt, expiry and a new cycle."""
    ai, gpu, msg = "mix-ai", "mix-gpu", "mix-msg"
    for account_id, plan in ((ai, "pro"), (gpu, "team"), (msg, "free")):
        await _ok(ledger, c.OpenAccount(account_id=account_id, name=account_id, plan=plan, idempotency_key="open"))
    # A replay appends nothing.
    await _ok(ledger, c.OpenAccount(account_id=ai, name=ai, plan="pro", idempotency_key="open"))

    bought = await ledger.execute(c.RecordPurchase(
        account_id=ai, kind="pack", pack_id="builder", cents_paid=5000, stripe_payment_intent="pi_test_1",
        idempotency_key="stripe:evt_1"))
    purchase = bought.events[0]
    assert isinstance(purchase, CreditsPurchased)
    await _ok(ledger, c.RecordPurchase(account_id=ai, kind="custom", cents_paid=1500, idempotency_key="stripe:evt_2"))
    await _ok(ledger, c.RedeemCoupon(account_id=ai, code="WELCOME10"))
    await _ok(ledger, c.SetBudget(account_id=ai, monthly_limit_ucr=60 * UCR))
    await _ok(ledger, c.SetLimit(account_id=ai, scope="agent", subject="support-bot", per_day_ucr=20 * UCR))
    who = Attribution(agent="support-bot", member="alice", flow="triage", run="r1")
    await ledger.execute_many([
        c.Meter(account_id=ai, operation="gpt-4o", quantities={"input_tokens": 120_000, "output_tokens": 30_000},
                attribution=who, idempotency_key=f"u{i}") for i in range(5)])
    await _ok(ledger, c.Charge(account_id=ai, operation="claude-haiku", quantities={"input_tokens": 5000},
                               attribution=who))
    await _ok(ledger, c.IssueRefund(account_id=ai, direction="clawback", purchase_id=purchase.event_id,
                                    amount_ucr=5 * UCR, reason="partial refund in Stripe"))

    await _ok(ledger, c.StartDeployment(account_id=gpu, deployment_id="d1", instance_type="gpu-s"))
    for hour in range(1, 4):
        clock.advance(HOUR)
        await _ok(ledger, c.ChargeDeploymentHour(account_id=gpu, deployment_id="d1", hour_index=hour,
                                                 idempotency_key=f"deployment:d1:hour:{hour}"))
    await _ok(ledger, c.PauseDeployment(account_id=gpu, deployment_id="d1"))
    await _ok(ledger, c.ResumeDeployment(account_id=gpu, deployment_id="d1"))
    await _ok(ledger, c.StopDeployment(account_id=gpu, deployment_id="d1"))
    held = await ledger.execute(c.Reserve(account_id=gpu, operation="training_h100_per_minute", quantity=60))
    reservation = held.events[-1]
    assert isinstance(reservation, CreditsReserved)
    await _ok(ledger, c.Settle(account_id=gpu, reservation_id=reservation.reservation_id, quantity=42))
    held = await ledger.execute(c.Reserve(account_id=gpu, operation="training_h100_per_minute", quantity=30))
    second = held.events[-1]
    assert isinstance(second, CreditsReserved)
    await _ok(ledger, c.Release(account_id=gpu, reservation_id=second.reservation_id))
    await _ok(ledger, c.IssueRefund(account_id=gpu, direction="credit", amount_ucr=2 * UCR, reason="failed run"))

    # Metered usage beyond every grant is debt; the next purchase settles it.
    await _ok(ledger, c.Meter(account_id=msg, operation="sms", quantity=2000))
    bought_msg = await ledger.execute(c.RecordPurchase(account_id=msg, kind="pack", pack_id="starter",
                                                       cents_paid=1000))
    await _ok(ledger, c.GrantCredits(account_id=msg, amount_ucr=3 * UCR, reason="goodwill",
                                     expires_at=clock.now() + timedelta(days=2)))

    # A month later: the promotion expires and the pro/team accounts get their next allowance.
    clock.set(add_months(T0, 1))
    await _ok(ledger, c.ExpireGrants(account_id=msg, idempotency_key="expire:1"))
    await _ok(ledger, c.GrantAllowance(account_id=ai, cycle=1))
    await _ok(ledger, c.GrantAllowance(account_id=gpu, cycle=1))
    # Disputes: ai's pack disputed and won (its credits back), msg's pack disputed and still open.
    await _ok(ledger, c.RecordDispute(account_id=ai, purchase_id=purchase.event_id, dispute_id="dp_1",
                                      reason="fraudulent"))
    await _ok(ledger, c.CloseDispute(account_id=ai, purchase_id=purchase.event_id, dispute_id="dp_1", outcome="won"))
    await _ok(ledger, c.RecordDispute(account_id=msg, purchase_id=bought_msg.events[0].event_id, dispute_id="dp_2",
                                      reason="product_not_received"))
    # Auto-refill on gpu: a rule, a card, one failed refill and one paid.
    await _ok(ledger, c.ConfigureAutoRefill(account_id=gpu, enabled=True, threshold_ucr=10_000 * UCR,
                                            amount_ucr=20 * UCR, daily_cap_ucr=100 * UCR))
    await _ok(ledger, c.SavePaymentMethod(account_id=gpu, stripe_customer="cus_1", payment_method="pm_1"))
    for outcome in ("failed", "paid"):
        version = (await ledger.balance(gpu)).version
        await _ok(ledger, c.RequestAutoRefill(account_id=gpu, crossing=version))
        await _ok(ledger, c.RecordAutoRefillFailure(account_id=gpu, crossing=version, reason="card_declined")
                  if outcome == "failed" else
                  c.RecordPurchase(account_id=gpu, kind="auto_refill", cents_paid=2000, crossing=version))
    # msg's plan paid through Stripe for one period, then cancelled.
    now = clock.now()
    await _ok(ledger, c.RecordSubscription(account_id=msg, stripe_subscription="sub_1", plan="pro", status="active",
                                           current_period_end=now + timedelta(days=30)))
    await _ok(ledger, c.GrantPlanAllowance(account_id=msg, invoice_id="in_1", plan="pro", period_start=now,
                                           period_end=now + timedelta(days=30), stripe_subscription="sub_1"))
    await _ok(ledger, c.RecordSubscription(account_id=msg, stripe_subscription="sub_1", plan="pro", status="canceled",
                                           current_period_end=now + timedelta(days=30)))
    return [ai, gpu, msg]


@pytest_asyncio.fixture(loop_scope="session")
async def world(fresh_database_url: str) -> AsyncIterator[World]:
    engine = make_engine(fresh_database_url, pool_size=4)
    clock = ManualClock(T0)
    ledger = Ledger(engine, clock, await ensure_rate_card(engine))
    await ledger.start()
    try:
        accounts = await build_mix(ledger, clock)
        yield World(engine, ledger, clock, accounts)
    finally:
        await ledger.stop()
        await engine.dispose()


async def _tamper(engine: AsyncEngine, *statements: str, bypass_trigger: bool = False) -> None:
    async with engine.begin() as conn:
        if bypass_trigger:
            # What a superuser could do: replica mode skips ordinary triggers, the append-only one too.
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
        for statement in statements:
            await conn.execute(text(statement))


async def test_clean_after_a_mix_of_commands(world: World) -> None:
    seen: list[tuple[int, int]] = []
    report = await verify(world.engine, progress=lambda done, total: seen.append((done, total)))
    assert report.mismatches == []
    assert report.clean
    assert report.accounts == 3
    async with world.engine.connect() as conn:
        assert report.events == await conn.scalar(text("SELECT count(*) FROM events"))
    assert seen[-1] == (3, 3)
    assert report.summary() == f"verify: 3 accounts, {report.events} events, clean"


async def test_small_chunks_and_account_filter(world: World) -> None:
    everything = await verify(world.engine, chunk_size=1)
    assert everything.clean and everything.accounts == 3
    one = await verify_account(world.engine, "mix-gpu")
    assert one.clean and one.accounts == 1 and 0 < one.events < everything.events


async def test_edited_inline_balance(world: World) -> None:
    await _tamper(world.engine, "UPDATE accounts SET balance_ucr = balance_ucr + 1 WHERE account_id = 'mix-ai'")
    report = await verify(world.engine)
    lines = [str(m) for m in report.mismatches]
    assert any(line.startswith("account mix-ai: balance is ") and ", events say " in line for line in lines)
    assert {m.account_id for m in report.mismatches} == {"mix-ai"}


async def test_edited_spent_total(world: World) -> None:
    """What an account ever spent lets a debit skip its counters: a wrong one is caught."""
    await _tamper(world.engine, "UPDATE accounts SET spent_ucr = spent_ucr - 1 WHERE account_id = 'mix-ai'")
    report = await verify(world.engine)
    assert [(m.account_id, m.what) for m in report.mismatches] == [("mix-ai", "spent")]


async def test_edited_event_amount(world: World) -> None:
    await _tamper(world.engine, "UPDATE events SET amount_ucr = amount_ucr - 1000000"
                                " WHERE account_id = 'mix-msg' AND version = 3", bypass_trigger=True)
    report = await verify(world.engine)
    whats = [m.what for m in report.mismatches]
    assert "event 3 hash" in whats
    assert {m.account_id for m in report.mismatches} == {"mix-msg"}


async def test_edited_event_data(world: World) -> None:
    await _tamper(world.engine, "UPDATE events SET data = jsonb_set(data, '{cost_ucr}', '1')"
                                " WHERE account_id = 'mix-ai' AND type = 'UsageMetered' AND version ="
                                " (SELECT min(version) FROM events WHERE account_id = 'mix-ai'"
                                "  AND type = 'UsageMetered')", bypass_trigger=True)
    report = await verify(world.engine)
    lines = [str(m) for m in report.mismatches]
    assert any(m.what.endswith(" hash") for m in report.mismatches), lines
    # The rewritten cost also shows in the spend counters the events now imply.
    assert any("spend counter account/" in line for line in lines), lines


async def test_deleted_event_leaves_a_version_gap(world: World) -> None:
    await _tamper(world.engine, "DELETE FROM events WHERE account_id = 'mix-gpu' AND version = 4",
                  bypass_trigger=True)
    report = await verify(world.engine)
    lines = [str(m) for m in report.mismatches]
    assert "account mix-gpu: the event after version 3 is version 5, events say version 4" in lines
    assert any(m.what == "event 5 hash" for m in report.mismatches)


async def test_deleted_last_event(world: World) -> None:
    await _tamper(world.engine, "DELETE FROM events WHERE account_id = 'mix-gpu' AND version ="
                                " (SELECT max(version) FROM events WHERE account_id = 'mix-gpu')",
                  bypass_trigger=True)
    report = await verify(world.engine)
    whats = {m.what for m in report.mismatches}
    assert {"version", "last_hash"} <= whats


async def test_edited_grant_row(world: World) -> None:
    await _tamper(world.engine, "UPDATE grants SET remaining_ucr = remaining_ucr + 5000000"
                                " WHERE account_id = 'mix-ai' AND source = 'purchase'"
                                " AND grant_id = (SELECT grant_id FROM grants WHERE account_id = 'mix-ai'"
                                " AND source = 'purchase' ORDER BY granted_at LIMIT 1)")
    report = await verify(world.engine)
    lines = [str(m) for m in report.mismatches]
    assert any(" remaining is " in line and line.startswith("account mix-ai: grant ") for line in lines), lines


async def test_extra_grant_row_and_missing_account_row(world: World) -> None:
    await _tamper(
        world.engine,
        "INSERT INTO grants (account_id, grant_id, source, original_ucr, remaining_ucr, granted_at)"
        " VALUES ('mix-msg', gen_random_uuid(), 'purchase', 1000000, 1000000, now())",
        "DELETE FROM accounts WHERE account_id = 'mix-gpu'",
    )
    report = await verify(world.engine)
    lines = [str(m) for m in report.mismatches]
    assert any(line.startswith("account mix-msg: grant ") and "is present, events say none" in line
               for line in lines), lines
    assert any(line.startswith("account mix-gpu: the accounts row is missing") for line in lines), lines


async def test_edited_deployment_reservation_and_counter(world: World) -> None:
    await _tamper(
        world.engine,
        "UPDATE deployments SET hours_charged = hours_charged - 1 WHERE account_id = 'mix-gpu'",
        "UPDATE reservations SET status = 'held' WHERE account_id = 'mix-gpu'",
        "UPDATE spend_counters SET spent_ucr = spent_ucr - 1 WHERE account_id = 'mix-ai' AND scope = 'agent'",
    )
    report = await verify(world.engine)
    whats = {(m.account_id, m.what) for m in report.mismatches}
    assert ("mix-gpu", "deployment d1 hours charged") in whats
    assert sum(1 for a, w in whats if a == "mix-gpu" and w.endswith(" status") and "reservation" in w) == 2
    assert any(a == "mix-ai" and w.startswith("spend counter agent/support-bot/") for a, w in whats)


async def test_edited_dispute_row(world: World) -> None:
    await _tamper(world.engine, "UPDATE disputes SET frozen_ucr = frozen_ucr + 1 WHERE account_id = 'mix-msg'",
                  "UPDATE disputes SET status = 'lost' WHERE account_id = 'mix-ai'")
    report = await verify(world.engine)
    whats = {(m.account_id, m.what.split(" of purchase ")[0]) for m in report.mismatches}
    assert whats == {("mix-msg", "dispute"), ("mix-ai", "dispute")}, report.mismatches


async def test_a_dispute_row_lost_or_invented_is_caught(world: World) -> None:
    await _tamper(world.engine, "DELETE FROM disputes WHERE account_id = 'mix-msg'",
                  "INSERT INTO disputes SELECT 'mix-gpu', gen_random_uuid(), 'dp_x', 'open', 1, 0, now(), NULL")
    report = await verify(world.engine)
    lines = sorted(str(m) for m in report.mismatches)
    assert len(lines) == 2 and "is none, events say Dispute(" in lines[1] and "mix-msg" in lines[1], lines
    assert "mix-gpu" in lines[0] and "events say none" in lines[0], lines


async def test_edited_auto_refill_settings(world: World) -> None:
    await _tamper(world.engine, "UPDATE accounts SET settings = jsonb_set(settings, '{auto_refill,failures}', '3')"
                                " WHERE account_id = 'mix-gpu'")
    report = await verify(world.engine)
    assert [(m.account_id, m.what) for m in report.mismatches] == [("mix-gpu", "auto-refill")]


async def test_edited_subscription_settings(world: World) -> None:
    await _tamper(world.engine, "UPDATE accounts SET settings = jsonb_set(settings, '{subscription,status}',"
                                " '\"active\"') WHERE account_id = 'mix-msg'")
    report = await verify(world.engine)
    assert [(m.account_id, m.what) for m in report.mismatches] == [("mix-msg", "subscription")]


async def test_clean_while_writers_commit(world: World) -> None:
    # Each chunk reads one snapshot: a batch committing mid-verify is seen whole or not at all.
    stop = asyncio.Event()

    async def write() -> int:
        n = 0
        while not stop.is_set():
            await world.ledger.execute_many([
                c.Meter(account_id=a, operation="email", quantity=3) for a in world.accounts])
            n += 1
        return n

    writer = asyncio.create_task(write())
    try:
        for _ in range(5):
            report = await verify(world.engine, chunk_size=1)
            assert report.mismatches == []
    finally:
        stop.set()
        batches = await writer
    assert batches > 0
    assert (await verify(world.engine)).clean
