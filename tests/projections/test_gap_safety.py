"""Gap safety with real concurrent writers: 32 writers append through the ledger's own write path
(lock, decide, write the batch) and then sleep inside their open transactions before they commit,
while the projectors fold the log in small spans. Positions commit out of order all the time; one
writer is held open on purpose while dozens of later positions commit and the projectors poll.
At the end the projected set is the event set: nothing skipped, nothing twice.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.db import make_engine
from ledger.events import Attribution
from ledger.service import Ledger
from ledger.store import Outcome
from ledger.store.sql import Pg
from projections.catalogue import PROJECTORS
from projections.rebuild import differences
from projections.runner import project_once
from tests.projections.conftest import OpenAccount
from tests.projections.proof import checkpoints, fold_to_end

UCR = 1_000_000
WRITERS = 32
ROUNDS = 6
#: Transactions of the other writers that commit while the first one holds its position open.
PASSED_BY = 40


async def test_32_sleeping_writers_nothing_skipped_nothing_twice(engine: AsyncEngine, ledger: Ledger,
                                                                 open_account: OpenAccount) -> None:
    # Writer 0 has an account of its own (its open transaction holds that account's lock); the
    # others write two to an account, so they also queue behind each other's sleeping transactions.
    accounts = [await open_account(credits_ucr=10**6 * UCR, prefix=f"gap{i}") for i in range(1 + WRITERS // 2)]
    writers_engine = make_engine(engine.url.render_as_string(hide_password=False), pool_size=WRITERS + 2)

    commits = itertools.count(1)
    committed: list[tuple[int, list[int]]] = []  # (commit order, positions) per writer transaction
    written: set[UUID] = set()
    laggard_open = asyncio.Event()
    laggard: dict[str, int] = {}  # its transaction id and its first position
    passed_by = asyncio.Event()  # later positions committed, and the projectors polled three times since
    polls_after_them = 0
    writers_done = asyncio.Event()

    async def write(pg: Pg, commands: list[c.Command], laggard_tx: bool, rng: random.Random) -> None:
        results, _, writes = await ledger.store._run(pg, commands)
        assert writes is not None
        await writes.run(pg)  # the events have their positions now
        ids = [e.event_id for r in results if isinstance(r, Outcome) for e in r.events]
        positions = sorted(await pg.fetchval(
            "SELECT array_agg(position) FROM events WHERE event_id = ANY($1::uuid[])", ids))
        if laggard_tx:
            laggard["tx"] = await pg.fetchval("SELECT pg_current_xact_id()::text::bigint")
            laggard["position"] = positions[0]
            laggard_open.set()
            # Held until later positions have committed and the projectors have polled past them.
            await passed_by.wait()
            # Gap safety while it is open: no projector has moved past its transaction.
            assert all(at.tx_id < laggard["tx"] for at in (await checkpoints(engine)).values())
        else:
            await asyncio.sleep(rng.uniform(0, 0.03))  # float-ok: a sleep inside the open transaction
        assert await pg.execute("COMMIT") == "COMMIT"
        committed.append((next(commits), positions))
        written.update(ids)

    async def writer(i: int) -> None:
        rng = random.Random(i)
        account = accounts[0] if i == 0 else accounts[1 + (i - 1) % (WRITERS // 2)]
        if i:
            await laggard_open.wait()  # everyone else takes positions after the laggard's
        async with writers_engine.connect() as conn:
            pg = (await conn.get_raw_connection()).driver_connection
            for r in range(ROUNDS):
                commands: list[c.Command] = [
                    c.Meter(account_id=account, operation="email", quantity=rng.randint(1, 20),
                            attribution=Attribution(agent=f"w{i}", flow=f"round-{r}"))
                    for _ in range(rng.randint(1, 3))]
                if rng.random() < 0.3:
                    commands.append(c.GrantCredits(account_id=account, amount_ucr=UCR, source="refund", reason="gap"))
                await write(pg, commands, i == 0 and r == 0, rng)

    async def project() -> None:
        nonlocal polls_after_them
        rng = random.Random(7)
        while not writers_done.is_set():
            for p in PROJECTORS:
                await project_once(engine, p, batch=rng.randint(1, 40))
            if len(committed) >= PASSED_BY and not passed_by.is_set():
                polls_after_them += 1
                if polls_after_them == 3:
                    passed_by.set()
            await asyncio.sleep(0)

    projector = asyncio.create_task(project())
    try:
        await asyncio.gather(*(writer(i) for i in range(WRITERS)))
    finally:
        writers_done.set()
        await projector
        await writers_engine.dispose()
    await fold_to_end(engine, PROJECTORS, batches=(13, 1, 50))

    # The hazard happened: the laggard's position was passed by transactions that committed first.
    passed = [order for order, positions in committed if positions[0] > laggard["position"]]
    laggard_order = next(order for order, positions in committed if positions[0] == laggard["position"])
    assert len([o for o in passed if o < laggard_order]) >= PASSED_BY
    assert len(committed) == WRITERS * ROUNDS

    async with engine.connect() as conn:
        usage_ids = set((await conn.execute(text(
            "SELECT event_id FROM events WHERE type = 'UsageMetered'"))).scalars())
        projected = list((await conn.execute(text("SELECT event_id FROM proj_executions"))).scalars())
        per_account = {r.account_id: (r.n, r.cost) for r in (await conn.execute(text(
            "SELECT account_id, count(*) AS n, sum((data->>'cost_ucr')::bigint) AS cost FROM events"
            " WHERE type = 'UsageMetered' GROUP BY 1"))).all()}
        rolled_up = {r.account_id: (r.n, r.cost) for r in (await conn.execute(text(
            "SELECT account_id, sum(events) AS n, sum(cost_ucr) AS cost FROM proj_usage_hourly"
            " WHERE dim = 'account' GROUP BY 1"))).all()}
        by_writer = {r.key: r.n for r in (await conn.execute(text(
            "SELECT key, sum(events) AS n FROM proj_usage_hourly WHERE dim = 'agent' GROUP BY 1"))).all()}
        in_feed = list((await conn.execute(text("SELECT event_id FROM proj_activities"))).scalars())
    assert len(projected) == len(set(projected)) == len(usage_ids)  # nothing twice
    assert set(projected) == usage_ids  # nothing skipped
    assert written & usage_ids <= set(projected)
    assert rolled_up == per_account
    assert sum(by_writer.values()) == len(usage_ids) and len(by_writer) == WRITERS
    assert len(in_feed) == len(set(in_feed)) and written <= set(in_feed)
    for p in PROJECTORS:
        assert await differences(engine, p) == []
