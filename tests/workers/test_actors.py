"""Every actor delivered twice, and concurrently: the same events as one delivery."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any

from dramatiq import Broker, MessageProxy
from dramatiq.middleware import Middleware
from sqlalchemy import text

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.errors import LedgerError
from ledger.service import Ledger
from ledger.settings import Settings
from tests.pg_proxy import PgProxy
from tests.workers.conftest import drain
from workers.commands import dump
from workers.runner import Background

CREDIT = 1_000_000


async def open_funded(ledger: Ledger, account_id: str, credits: int) -> None:
    await ledger.execute(c.OpenAccount(account_id=account_id, name=account_id, plan="free"))
    await ledger.execute(c.GrantCredits(account_id=account_id, amount_ucr=credits * CREDIT, source="purchase",
                                        reason="test"))


async def event_rows(ledger: Ledger, account_id: str) -> list[tuple[str, str | None]]:
    async with ledger.engine.connect() as conn:
        return [(r.type, r.idempotency_key) for r in (await conn.execute(text(
            "SELECT type, idempotency_key FROM events WHERE account_id = :a ORDER BY version"),
            {"a": account_id})).all()]


async def test_each_actor_twice_and_concurrently_is_one_delivery(
        background: Background, wledger: Ledger, clock: ManualClock) -> None:
    await open_funded(wledger, "twice", 50)
    await wledger.execute(c.SetBudget(account_id="twice", monthly_limit_ucr=10 * CREDIT))
    await wledger.execute(c.StartDeployment(account_id="twice", deployment_id="d1", instance_type="gpu-s"))
    clock.advance(timedelta(hours=2, minutes=1))
    hours = [dump(c.ChargeDeploymentHour(account_id="twice", deployment_id="d1", hour_index=n,
                                         idempotency_key=f"deployment:d1:hour:{n}")) for n in (1, 2)]
    usage = [{"account_id": "twice", "operation": "email", "quantity": 9000, "idempotency_key": f"u{i}"}
             for i in range(3)]
    before = await event_rows(wledger, "twice")

    a = background.actors
    for _ in range(2):  # every message twice, all in the queues before the worker starts
        a.execute_commands.send(hours)
        a.record_usage.send(usage)
    background.start_worker(threads=4)
    drain(background)
    for _ in range(2):
        a.check_alerts.send("twice", None)
        a.pause_for_debt.send("twice")
    drain(background)

    after = await event_rows(wledger, "twice")
    added = after[len(before):]
    types = [t for t, _ in added]
    assert types.count("UsageMetered") == 2 + 3, added  # two hours, three usage items: once each
    assert sorted(str(k) for t, k in added if t == "UsageMetered") == sorted(
        ["deployment:d1:hour:1", "deployment:d1:hour:2", "u0", "u1", "u2"])
    # 27 credits of email + hours on a 10-credit budget: 80, 95 and 100 % fire once each.
    alerts = [k for t, k in added if t == "AlertRaised"]
    assert len(alerts) == len(set(alerts)) == 3, alerts
    assert types.count("DeploymentPaused") == 0, "not in debt: nothing to pause"


async def test_concurrent_sends_of_one_usage_batch(background: Background, wledger: Ledger) -> None:
    await open_funded(wledger, "burst", 5)
    usage = [{"account_id": "burst", "operation": "email", "quantity": 1, "idempotency_key": f"k{i}"}
             for i in range(50)]
    background.start_worker(threads=8)
    await asyncio.gather(*(asyncio.to_thread(background.actors.record_usage.send, usage) for _ in range(6)))
    drain(background)
    keys = [str(k) for t, k in await event_rows(wledger, "burst") if t == "UsageMetered"]
    assert sorted(keys) == sorted(f"k{i}" for i in range(50))


async def test_a_producer_message_as_documented_is_recorded_once(background: Background, wledger: Ledger) -> None:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    await open_funded(wledger, "producer", 5)
    # The producer's side, as docs/workers.md shows it: its own broker, no actor code.
    producer = RedisBroker(url=background.settings.redis_url,  # type: ignore[no-untyped-call]
                           namespace=background.settings.broker_namespace)
    events = [{"account_id": "producer", "operation": "gpt-4o", "quantities": {"input_tokens": 1200,
                                                                              "output_tokens": 350},
               "attribution": {"agent": "support-bot"}, "idempotency_key": "req-8812"}]
    for _ in range(2):
        producer.enqueue(dramatiq.Message(queue_name="usage", actor_name="record_usage", options={}, kwargs={},
                                          args=(events,)))
    producer.close()
    background.start_worker(threads=2)
    drain(background)
    assert [k for t, k in await event_rows(wledger, "producer") if t == "UsageMetered"] == ["req-8812"]


class Attempts(Middleware):
    """Every attempt at a message: its id and what it raised (``None``: it succeeded)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, BaseException | None]] = []
        self.failed = threading.Event()

    def after_process_message(self, broker: Broker, message: MessageProxy, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        self.seen.append((message.message_id, exception))
        if exception is not None:
            self.failed.set()


async def test_the_intake_actor_retries_what_an_outage_kept_out_and_never_a_rejected_item(
        settings: Settings, wledger: Ledger, clock: ManualClock) -> None:
    """The database unreachable while a batch is taken: the actor raises, so Dramatiq retries the
    message with backoff, and once the database is back every item is recorded once. A batch whose
    only item is bad is rejected once and never retried."""
    proxy = PgProxy(settings.database_url or "")
    await proxy.start()
    bg = Background(settings.model_copy(update={"database_url": proxy.url}), clock=clock)
    attempts = Attempts()
    bg.broker.add_middleware(attempts)
    try:
        await open_funded(wledger, "queued", 5)
        item = {"account_id": "queued", "operation": "email", "quantity": 1}
        bad = {**item, "operation": "no-such-operation", "idempotency_key": "bad"}
        bg.start_worker(threads=2)
        rejected = bg.actors.record_usage.send([bad])  # (the worker opens its ledger meanwhile)
        await asyncio.to_thread(drain, bg)
        await proxy.cut()
        sent = bg.actors.record_usage.send([{**item, "idempotency_key": f"q{i}"} for i in range(3)])
        assert await asyncio.to_thread(attempts.failed.wait, 30), "the batch was attempted during the outage"
        await proxy.start()
        deadline = time.monotonic() + 30
        while len(keys := [k for t, k in await event_rows(wledger, "queued") if t == "UsageMetered"]) < 3:
            assert time.monotonic() < deadline, f"the retried batch was not recorded: {keys}"
            await asyncio.sleep(0.1)
        await asyncio.to_thread(drain, bg)
    finally:
        await asyncio.to_thread(bg.close)
        await proxy.cut()
    assert sorted(str(k) for k in keys) == ["q0", "q1", "q2"], "each item once"
    of_sent = [exc for mid, exc in attempts.seen if mid == sent.message_id]
    assert of_sent[-1] is None and len(of_sent) >= 2
    assert all(isinstance(exc, LedgerError) and exc.transient for exc in of_sent[:-1]), of_sent
    assert [exc for mid, exc in attempts.seen if mid == rejected.message_id] == [None], "a rejection is final"
