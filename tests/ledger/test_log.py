"""The event log read in order is gap-safe: a reader never passes a writer still in flight, and
per account the log order is version order, even under concurrent writers.

Each test takes a fresh database (an empty log). ``pg_snapshot_xmin`` is cluster-wide, so a
transaction in someone else's database may hold the reader back for a moment: reads that must
eventually return something poll until they do (with a generous deadline that only a broken
reader ever reaches); no assertion depends on timing.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.db import make_engine
from ledger.log import START, LogEntry, LogPosition, load_checkpoint, read_log, save_checkpoint
from ledger.rate_cards import ensure_rate_card
from ledger.service import Ledger
from ledger.store import Outcome
from tests.ledger.conftest import T0

UCR = 1_000_000
#: Only a broken reader gets here; a healthy one returns within milliseconds.
DEADLINE_S = 30.0


@dataclass
class Fresh:
    engine: AsyncEngine
    ledger: Ledger
    clock: ManualClock


@pytest_asyncio.fixture(loop_scope="session")
async def fresh(fresh_database_url: str) -> AsyncIterator[Fresh]:
    engine = make_engine(fresh_database_url)
    clock = ManualClock(T0)
    ledger = Ledger(engine, clock, await ensure_rate_card(engine))
    await ledger.start()
    try:
        yield Fresh(engine, ledger, clock)
    finally:
        await ledger.stop()
        await engine.dispose()


def _ids(entries: Iterable[LogEntry]) -> list[str]:
    return [str(e.event.event_id) for e in entries]


async def _stored_ids(engine: AsyncEngine) -> list[str]:
    """Every committed event id, in position order."""
    async with engine.connect() as conn:
        return [str(i) for i in (await conn.execute(text("SELECT event_id FROM events ORDER BY position"))).scalars()]


async def _read_until(engine: AsyncEngine, after: LogPosition, want: Iterable[str]) -> list[LogEntry]:
    """Read the log from ``after``, page by page, until every id in ``want`` has come by."""
    missing = set(want)
    out: list[LogEntry] = []
    deadline = time.monotonic() + DEADLINE_S
    while missing:
        async with engine.connect() as conn:
            page = await read_log(conn, after, limit=100)
        if page:
            out += page
            after = page[-1].at
            missing -= set(_ids(page))
            continue
        assert time.monotonic() < deadline, f"the log never delivered {sorted(missing)}"
        await asyncio.sleep(0.01)
    return out


async def test_a_reader_never_passes_a_writer_still_in_flight(fresh: Fresh) -> None:
    engine, ledger = fresh.engine, fresh.ledger
    await ledger.execute(c.OpenAccount(account_id="writer-a", name="A"))
    await ledger.execute(c.OpenAccount(account_id="writer-b", name="B"))
    setup_ids = await _stored_ids(engine)
    setup = await _read_until(engine, START, setup_ids)
    assert _ids(setup) == setup_ids

    # A follower reads what there is and checkpoints it.
    async with engine.begin() as conn:
        follower = await read_log(conn, await load_checkpoint(conn, "follower"))
        assert _ids(follower) == setup_ids
        await save_checkpoint(conn, "follower", follower[-1].at)
    follower_seen = _ids(follower)

    # Writer A: takes the account lock and inserts its event the way the store does, then stays open.
    async with engine.connect() as conn_a:
        # ``_run`` opens the batch's transaction on the asyncpg connection and decides; the write
        # goes in that transaction, which stays open.
        pg_a = (await conn_a.get_raw_connection()).driver_connection
        assert pg_a is not None
        results, _, writes = await ledger.store._run(pg_a, [c.GrantCredits(
            account_id="writer-a", amount_ucr=UCR, source="purchase", reason="writer A")])
        assert writes is not None
        await writes.run(pg_a)
        (a_result,) = results
        assert isinstance(a_result, Outcome)
        a_id = str(a_result.events[0].event_id)
        a_position = await pg_a.fetchval("SELECT position FROM events WHERE event_id = $1::uuid", a_id)

        # Writer B commits after A took its position: B's position is larger.
        b_result = await ledger.execute(c.GrantCredits(account_id="writer-b", amount_ucr=UCR, source="purchase",
                                                       reason="writer B"))
        b_id = str(b_result.events[0].event_id)
        async with engine.connect() as conn:
            b_position = await conn.scalar(text("SELECT position FROM events WHERE event_id = :e"), {"e": b_id})
            assert b_position is not None and a_position is not None and b_position > a_position
            # B is committed and visible, A is not yet: a reader going by position alone would pass A here.
            assert await _stored_ids(engine) == [*setup_ids, b_id]

            # The log stops before A: B is held back, from the start and from the follower's checkpoint.
            page = await read_log(conn, START)
            assert _ids(page) == setup_ids
            assert await read_log(conn, setup[-1].at) == []

        # The follower polls again while A is open: nothing new, its checkpoint stays put.
        async with engine.begin() as conn:
            at = await load_checkpoint(conn, "follower")
            assert at == follower[-1].at
            more = await read_log(conn, at)
            assert more == []
        assert await pg_a.execute("COMMIT") == "COMMIT"

    # A committed: the log has both, A first (its transaction is older), each exactly once.
    everything = await _read_until(engine, START, [*setup_ids, a_id, b_id])
    assert _ids(everything) == [*setup_ids, a_id, b_id]
    assert everything[-2].at < everything[-1].at
    async with engine.connect() as conn:
        assert await read_log(conn, everything[-1].at) == []

    # The follower resumes from its checkpoint and gets A and B, nothing it had already seen.
    async with engine.connect() as conn:
        at = await load_checkpoint(conn, "follower")
    caught_up = await _read_until(engine, at, [a_id, b_id])
    assert _ids(caught_up) == [a_id, b_id]
    async with engine.begin() as conn:
        await save_checkpoint(conn, "follower", caught_up[-1].at)
        # A checkpoint never moves back.
        await save_checkpoint(conn, "follower", START)
    async with engine.connect() as conn:
        at = await load_checkpoint(conn, "follower")
        assert at == caught_up[-1].at
        assert await read_log(conn, at) == []
    follower_seen += _ids(caught_up)
    assert follower_seen == [*setup_ids, a_id, b_id]


async def test_per_account_log_order_is_version_order_under_concurrent_writers(fresh: Fresh) -> None:
    engine, clock, card = fresh.engine, fresh.clock, fresh.ledger.card
    accounts = [f"shared-{i}" for i in range(5)]
    for a in accounts:
        await fresh.ledger.execute(c.OpenAccount(account_id=a, name=a))
        await fresh.ledger.execute(c.GrantCredits(account_id=a, amount_ucr=100 * UCR, source="purchase",
                                                  reason="float"))
    rng = random.Random(20261101)
    commands: list[c.Command] = []
    for i in range(200):
        a = rng.choice(accounts)
        kind = i % 4
        if kind == 0:
            commands.append(c.Charge(account_id=a, operation="email", quantity=1000))
        elif kind == 1:
            commands.append(c.Meter(account_id=a, operation="sms", quantity=rng.randint(1, 50)))
        elif kind == 2:
            commands.append(c.GrantCredits(account_id=a, amount_ucr=rng.randint(1, 5) * UCR, source="refund",
                                           reason="r"))
        else:
            commands.append(c.Charge(account_id=a, operation="gpt-4o-mini",
                                     quantities={"input_tokens": rng.randint(1, 10**6)}))

    # Four writers, three loops each, small batches: many transactions over the same accounts at once.
    writers = [Ledger(engine, clock, card, max_batch=8, concurrency=3) for _ in range(4)]
    for w in writers:
        await w.start()

    # A follower tails the log while they write, checkpoint to checkpoint.
    tailed: list[LogEntry] = []
    total: list[int] = []  # set once the writers are done: how many events the follower must reach

    async def tail() -> None:
        at = START
        while True:
            async with engine.connect() as conn:
                page = await read_log(conn, at, limit=25)
            if page:
                tailed.extend(page)
                at = page[-1].at
            elif total and len(tailed) >= total[0]:
                return
            else:
                await asyncio.sleep(0.001)

    follower = asyncio.create_task(tail())
    try:
        results = await asyncio.gather(*(writers[i % 4].execute(cmd) for i, cmd in enumerate(commands)))
    finally:
        for w in writers:
            await w.stop()
    assert all(isinstance(r, Outcome) for r in results)

    stored = await _stored_ids(engine)
    everything = await _read_until(engine, START, stored)
    assert sorted(_ids(everything)) == sorted(stored)
    assert len(set(_ids(everything))) == len(everything)
    assert all(x.at < y.at for x, y in itertools.pairwise(everything))

    async with engine.connect() as conn:
        versions = {str(r.event_id): (r.account_id, r.version)
                    for r in (await conn.execute(text("SELECT event_id, account_id, version FROM events"))).all()}
    per_account: dict[str, list[int]] = defaultdict(list)
    for entry in everything:
        account_id, version = versions[str(entry.event.event_id)]
        assert entry.event.account_id == account_id
        per_account[account_id].append(version)
    for account_id, seen in per_account.items():
        assert seen == list(range(1, len(seen) + 1)), f"{account_id}: log order {seen} is not version order"

    # The follower that read while the writers wrote, once caught up, saw the same log: no gap, no repeat.
    total.append(len(stored))
    await asyncio.wait_for(follower, DEADLINE_S)
    assert _ids(tailed) == _ids(everything)
