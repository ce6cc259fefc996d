"""Two runners at once (as ``credits serve`` and ``credits worker`` both run projections) fold each
span once: every event is covered once per projector in all, no fold fails on a key it already
wrote, and the tables equal a fresh fold."""

from __future__ import annotations

import asyncio
import logging
import random
import time

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.events import Attribution
from ledger.service import Ledger
from projections.catalogue import PROJECTORS
from projections.rebuild import differences
from projections.runner import Projections
from tests.projections.conftest import OpenAccount
from tests.projections.proof import DEADLINE_S, checkpoints, log_end


class Counting(Projections):
    """A runner that counts the events its spans covered."""

    covered = 0

    async def run_once(self) -> int:
        moved = await super().run_once()
        self.covered += moved
        return moved


async def test_two_runners_fold_each_span_once(engine: AsyncEngine, ledger: Ledger, open_account: OpenAccount,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="projections")
    accounts = [await open_account(credits_ucr=10**9) for _ in range(20)]
    stop = asyncio.Event()
    # Small spans: many rounds in which the two contend for the same checkpoints.
    runners = [Counting(engine, batch=37), Counting(engine, batch=50)]
    tasks = [asyncio.create_task(r.run(stop, idle_s=0.01, busy_s=0.0)) for r in runners]
    rng = random.Random(16)
    try:
        for _ in range(60):
            await ledger.execute_many([
                c.Meter(account_id=rng.choice(accounts), operation="gpt-4o",
                        quantities={"input_tokens": rng.randint(1, 10**5), "output_tokens": rng.randint(0, 10**4)},
                        attribution=Attribution(agent=rng.choice(["a", "b"]), member=rng.choice(["m", None])))
                for _ in range(rng.randint(1, 40))])
            await asyncio.sleep(0)
        end = await log_end(engine)
        deadline = time.monotonic() + DEADLINE_S
        while any(at != end for at in (await checkpoints(engine)).values()):
            assert time.monotonic() < deadline, "the runners never reached the end of the log"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    # A span folded twice would have failed on proj_executions' key and been logged and retried.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    async with engine.connect() as conn:
        events = await conn.scalar(text("SELECT count(*) FROM events"))
        used = await conn.scalar(text("SELECT count(*) FROM events WHERE type = 'UsageMetered'"))
        executions = await conn.scalar(text("SELECT count(*) FROM proj_executions"))
        rolled = await conn.scalar(text("SELECT sum(events) FROM proj_usage_hourly WHERE dim = 'account'"))
    # Each projector's spans covered the log exactly once, between the two runners.
    assert sum(r.covered for r in runners) == len(PROJECTORS) * events
    assert executions == rolled == used
    for p in PROJECTORS:
        assert await differences(engine, p) == []
