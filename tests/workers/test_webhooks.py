"""Webhook delivery scheduled in PostgreSQL: what the broker loses is sent again (same
``webhook-id``), two sweeps never hand over one delivery twice, and a delivery out of attempts is
``dead`` where the operator sees it."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

from sqlalchemy import text

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.service import Ledger
from ledger.settings import Settings
from tests.workers.conftest import drain
from tests.workers.test_relay import PrivateRedis, Receiver, relay_until_caught_up
from workers.runner import Background
from workers.webhooks import Schedule, claim_due, create_endpoint, register, sweep

CREDIT = 1_000_000


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: int = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def deliveries(ledger: Ledger, account_id: str) -> list[tuple[str, int]]:
    async with ledger.engine.connect() as conn:
        return [(r.status, r.attempts) for r in (await conn.execute(text(
            "SELECT status, attempts FROM webhook_deliveries WHERE account_id = :a ORDER BY event_id"),
            {"a": account_id})).all()]


async def test_deliveries_the_broker_lost_are_sent_again_from_postgresql_once_each(
        settings: Settings, wledger: Ledger, clock: ManualClock, tmp_path: Path) -> None:
    """The receiver answers 503, ten charges, Redis killed while their retries wait in it and
    restarted empty, the receiver back: the scheduler's sweep sends every delivery again with its
    webhook-id, and each is received once."""
    redis = PrivateRedis(tmp_path)
    redis.start()
    conf = settings.model_copy(update={"broker_url": redis.url, "webhook_max_retries": 50,
                                       "webhook_min_backoff_ms": 50, "webhook_max_backoff_ms": 200,
                                       "webhook_lease_s": 60})
    receiver = Receiver([503] * 100_000)
    first = Background(conf, clock=clock)
    second: Background | None = None
    try:
        await wledger.execute(c.OpenAccount(account_id="lost", name="l", plan="pro"))
        await wledger.execute(c.GrantCredits(account_id="lost", amount_ucr=100 * CREDIT, source="purchase",
                                             reason="t"))
        await create_endpoint(wledger.engine, "lost", receiver.url, ["UsageMetered"], allow_private=True,
                              now=clock.now())
        for i in range(10):
            await wledger.execute(c.Charge(account_id="lost", operation="email", quantity=1000,
                                           idempotency_key=f"lost-{i}"))
        first.start_worker(threads=2)
        await relay_until_caught_up(first, wledger)

        async def retrying() -> bool:
            rows = await deliveries(wledger, "lost")
            return len(rows) == 10 and all(attempts >= 2 for _, attempts in rows)
        await until(retrying, "every delivery failed twice (its next attempt waits in the broker)")
        first.stop_worker()
        redis.stop()  # SIGKILL: every queued and delayed message is gone
        redis.start()
        first.close()
        assert {status for status, _ in await deliveries(wledger, "lost")} == {"failed"}

        receiver.statuses.clear()  # the receiver is back: 200 from now on
        second = Background(conf, clock=clock)
        second.start_worker(threads=2)
        clock.advance(timedelta(seconds=61))  # past every lease: due, and in flight nowhere
        tick = await second.scheduler(wledger).tick()
        assert tick.webhooks == 10

        async def delivered() -> bool:
            return [s for s, _ in await deliveries(wledger, "lost")] == ["delivered"] * 10
        await until(delivered, "every delivery was sent again and taken")
        await asyncio.to_thread(drain, second)
        assert (await second.scheduler(wledger).tick()).webhooks == 0, "nothing left to send"
    finally:
        if second is not None:
            second.close()
        redis.stop()
        receiver.server.shutdown()
    async with wledger.engine.connect() as conn:
        ids = {str(v) for v in (await conn.execute(text(
            "SELECT event_id FROM events WHERE account_id = 'lost' AND type = 'UsageMetered'"))).scalars()}
    taken = Counter(headers["webhook-id"] for headers, _, status in receiver.requests if status == 200)
    assert set(taken) == ids and len(ids) == 10, "none missing, each under its event's webhook-id"
    assert set(taken.values()) == {1}, f"each taken once: {taken}"


async def test_two_sweeps_at_once_never_hand_over_one_delivery_twice(wledger: Ledger, clock: ManualClock) -> None:
    """Two schedulers sweeping at the same moment split the due deliveries between them (row locks,
    SKIP LOCKED); one a worker is sending (in flight, its lease running) is in neither, and is sent
    again once its lease runs out (the worker was killed mid-send)."""
    account, now = f"sweep-{secrets.token_hex(4)}", clock.now()
    due = [(account, "we_a", str(uuid4())) for _ in range(20)]
    sending = (account, "we_a", str(uuid4()))
    async with wledger.engine.begin() as conn:
        await register(conn, due, now - timedelta(hours=1), timedelta(0))  # due; its message was lost
        await register(conn, [sending], now - timedelta(minutes=1), timedelta(minutes=3))
    lease = timedelta(minutes=5)
    async with wledger.engine.connect() as a, wledger.engine.connect() as b:
        await a.begin()
        await b.begin()
        took_a = await claim_due(a, now, lease, limit=12)  # its transaction stays open: rows locked
        took_b = await asyncio.wait_for(claim_due(b, now, lease), timeout=10)  # meanwhile, not after
        await a.commit()
        await b.commit()
    keys_a = {(d.account_id, d.endpoint_id, d.event_id) for d in took_a}
    keys_b = {(d.account_id, d.endpoint_id, d.event_id) for d in took_b}
    assert len(keys_a) == 12 and len(keys_b) == 8 and not keys_a & keys_b
    assert keys_a | keys_b == set(due), "all due, none in flight"
    assert all(d.attempt == 0 for d in took_a + took_b)
    assert await sweep(wledger.engine, now, Schedule()) == [], "claimed: in flight now"
    later = await sweep(wledger.engine, now + timedelta(minutes=3), Schedule())
    assert [(d.account_id, d.endpoint_id, d.event_id) for d in later] == [sending]


async def test_a_delivery_out_of_attempts_is_dead_and_swept_no_more(
        background: Background, wledger: Ledger, clock: ManualClock) -> None:
    receiver = Receiver([503] * 1000)
    try:
        await wledger.execute(c.OpenAccount(account_id="dead", name="d", plan="pro"))
        await create_endpoint(wledger.engine, "dead", receiver.url, ["UsageMetered"], allow_private=True,
                              now=clock.now())
        await wledger.execute(c.Meter(account_id="dead", operation="email", quantity=10))
        background.start_worker(threads=1)
        await relay_until_caught_up(background, wledger)

        async def dead() -> bool:
            return [s for s, _ in await deliveries(wledger, "dead")] == ["dead"]
        await until(dead, "the delivery ran out of attempts")
        await asyncio.to_thread(drain, background)
        clock.advance(timedelta(days=1))
        assert (await background.scheduler(wledger).tick()).webhooks == 0
    finally:
        receiver.server.shutdown()
    # CREDITS_WEBHOOK_MAX_RETRIES=3: four attempts in all, then no more.
    assert await deliveries(wledger, "dead") == [("dead", 4)]
    assert len(receiver.requests) == 4
