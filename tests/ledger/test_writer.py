"""The group-commit writer: batching, whole groups in order, draining on stop."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.errors import CommandFailed, OutcomeUnknown, Unavailable
from ledger.rates import RateCard
from ledger.service import Ledger
from ledger.store import Outcome, Result, lock_key
from ledger.writer import GroupCommitWriter
from tests.ledger.conftest import OpenAccount
from tests.pg_proxy import ledger_behind_proxy


async def test_concurrent_callers_share_batches(ledger: Ledger, open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=100_000_000)
    before = len(ledger.writer.batch_sizes)
    await asyncio.gather(*[ledger.execute(c.Meter(account_id=account, operation="email", quantity=1))
                           for _ in range(64)])
    sizes = ledger.writer.batch_sizes[before:]
    assert sum(sizes) == 64
    assert len(sizes) < 64, "64 concurrent callers must not take 64 transactions"


async def test_a_group_larger_than_max_batch_commits_whole_and_in_order(
    engine: AsyncEngine, clock: ManualClock, rate_card: RateCard, open_account: OpenAccount,
) -> None:
    small = Ledger(engine, clock, rate_card, max_batch=8, concurrency=2)
    await small.start()
    try:
        accounts = [await open_account(credits_ucr=10_000_000) for _ in range(3)]
        commands = [c.Meter(account_id=accounts[i % 3], operation="email", quantity=i + 1,
                            idempotency_key=f"k{i}") for i in range(30)]
        before = len(small.writer.batch_sizes)
        results = await small.execute_many(commands)
    finally:
        await small.stop()
    assert all(isinstance(r, Outcome) for r in results)
    assert small.writer.batch_sizes[before:] == [30], "one execute_many call is one transaction"
    async with engine.connect() as conn:
        for n, account in enumerate(accounts):
            rows = (await conn.execute(text(
                "SELECT idempotency_key FROM events WHERE account_id = :a AND type = 'UsageMetered'"
                " AND idempotency_key LIKE 'k%' ORDER BY version"), {"a": account})).scalars().all()
            assert rows == [f"k{i}" for i in range(n, 30, 3)], "per account, events follow submission order"


async def test_stop_finishes_everything_submitted(
    engine: AsyncEngine, clock: ManualClock, rate_card: RateCard, open_account: OpenAccount,
) -> None:
    account = await open_account(credits_ucr=10_000_000)
    service = Ledger(engine, clock, rate_card)
    await service.start()
    futures = [service.writer.submit_nowait(c.Meter(account_id=account, operation="email", quantity=1))
               for _ in range(40)]
    await service.stop()
    assert all(f.done() and isinstance(f.result(), Outcome) for f in futures)
    async with engine.connect() as conn:
        n = (await conn.execute(text(
            "SELECT count(*) FROM events WHERE account_id = :a AND type = 'UsageMetered'"
            " AND idempotency_key IS NULL AND (data->'quantities'->>'messages')::int = 1"),
            {"a": account})).scalar()
    assert n == 40


class _CommitLost:
    """A store whose COMMIT fails in flight: recorded or not, nobody can tell."""

    def __init__(self) -> None:
        self.calls = 0

    async def run_batch(self, commands: list[c.Command]) -> list[Result]:
        self.calls += 1
        raise OutcomeUnknown("connection lost during COMMIT")


async def test_an_ambiguous_commit_is_never_retried_blindly() -> None:
    """Retrying after a lost COMMIT could charge twice: every caller gets OutcomeUnknown (503)
    and retries with its idempotency key instead; the batch is not re-run command by command."""
    store = _CommitLost()
    writer = GroupCommitWriter(store, concurrency=1)  # type: ignore[arg-type]
    await writer.start()
    try:
        results = await writer.submit_many([c.Meter(account_id="a", operation="email", quantity=1,
                                                    idempotency_key=f"k{i}") for i in range(3)])
    finally:
        await writer.stop()
    assert store.calls == 1
    assert all(isinstance(r, OutcomeUnknown) and r.status == 503 for r in results)


async def test_an_unreachable_database_fails_each_command_as_unavailable(
    engine: AsyncEngine, database_url: str, clock: ManualClock, rate_card: RateCard, open_account: OpenAccount,
) -> None:
    """A real outage (the only way to the server cut): every command of the batch gets
    ``Unavailable`` (503, transient: retry with the key), not ``CommandFailed`` (a 500, a bug);
    once the server is back the same keys record once."""
    account = await open_account(credits_ucr=10_000_000)
    commands = [c.Meter(account_id=account, operation="email", quantity=1, idempotency_key=f"k{i}")
                for i in range(4)]
    async with ledger_behind_proxy(database_url, clock, rate_card) as (remote, proxy):
        await remote.balance(account)  # connected once, then the connections are cut under it
        await proxy.cut()
        results = await remote.execute_many(commands)
        assert all(isinstance(r, Unavailable) and r.status == 503 and r.transient for r in results), results
        await proxy.start()
        again = await remote.execute_many(commands)
    assert [(isinstance(r, Outcome) and r.replayed) for r in again] == [False] * 4
    async with engine.connect() as conn:
        keys = (await conn.execute(text(
            "SELECT idempotency_key FROM events WHERE account_id = :a AND type = 'UsageMetered'"
            " AND idempotency_key LIKE 'k%' ORDER BY idempotency_key"), {"a": account})).scalars().all()
    assert keys == ["k0", "k1", "k2", "k3"], "each once"


class _Unreachable:
    """A store whose server refuses every connection."""

    def __init__(self) -> None:
        self.calls = 0

    async def run_batch(self, commands: list[c.Command]) -> list[Result]:
        self.calls += 1
        raise ConnectionRefusedError(111, "Connect call failed")


async def test_the_one_by_one_retry_stops_at_the_first_unreachable_database() -> None:
    """A failed batch is retried command by command to isolate a poisoned one; when the first
    retry finds the database away the rest fail at once instead of each waiting for it in turn."""
    store = _Unreachable()
    writer = GroupCommitWriter(store, concurrency=1)  # type: ignore[arg-type]
    await writer.start()
    try:
        results = await writer.submit_many([c.Meter(account_id="a", operation="email", quantity=1,
                                                    idempotency_key=f"k{i}") for i in range(5)])
    finally:
        await writer.stop()
    assert store.calls == 2, "the batch, then one command alone"
    assert all(isinstance(r, Unavailable) and not isinstance(r, CommandFailed) for r in results)


async def _batches_while_one_is_held(engine: AsyncEngine, clock: ManualClock, rate_card: RateCard,
                                     open_account: OpenAccount, parallel_at: int) -> list[int]:
    """Hold one lone batch at its account's lock (another session has it), submit three commands on
    other accounts meanwhile, release; the batch sizes in the order they committed."""
    held, *others = [await open_account(credits_ucr=10_000_000) for _ in range(4)]
    service = Ledger(engine, clock, rate_card, concurrency=2, parallel_at=parallel_at)
    await service.start()
    try:
        async with engine.connect() as blocker:
            await blocker.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock_key(held)})
            first = service.writer.submit_nowait(c.Meter(account_id=held, operation="email", quantity=1))
            await asyncio.sleep(0.2)  # the first batch is in flight, waiting for the lock
            rest = [service.writer.submit_nowait(c.Meter(account_id=a, operation="email", quantity=1))
                    for a in others]
            await asyncio.sleep(0.3)
            await blocker.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key(held)})
            results = await asyncio.gather(first, *rest)
    finally:
        await service.stop()
    assert all(isinstance(r, Outcome) for r in results)
    return service.writer.batch_sizes


async def test_a_few_commands_wait_for_the_batch_in_flight_and_share_the_next(
    engine: AsyncEngine, clock: ManualClock, rate_card: RateCard, open_account: OpenAccount,
) -> None:
    # Three waiting commands are fewer than parallel_at: no second batch starts beside the held one.
    assert await _batches_while_one_is_held(engine, clock, rate_card, open_account, parallel_at=16) == [1, 3]


async def test_enough_waiting_commands_start_a_batch_beside_the_one_in_flight(
    engine: AsyncEngine, clock: ManualClock, rate_card: RateCard, open_account: OpenAccount,
) -> None:
    # With parallel_at=3 they are enough: the second batch commits while the first still waits.
    assert await _batches_while_one_is_held(engine, clock, rate_card, open_account, parallel_at=3) == [3, 1]
