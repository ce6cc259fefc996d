"""A projector killed mid-batch resumes without double counting.

``credits projections run`` folds a backlog of 25,000 metered events in its own process. A trigger
this test puts on ``proj_usage_hourly`` (in its own database) stalls the usage projector's second
span after its rows are written and before its checkpoint is: the process is SIGKILLed right
there, with a span half done and one span of each projector committed. A second
``credits projections run`` goes on to the end. Every read model then equals a fresh fold of the
log and holds each event once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.events import Attribution
from ledger.log import START
from ledger.service import Ledger
from projections.catalogue import PROJECTORS
from projections.rebuild import differences
from projections.usage import USAGE
from tests.ledger.cli.test_demo_embedded import REPO_ROOT, credits_command
from tests.projections.conftest import OpenAccount
from tests.projections.proof import DEADLINE_S, checkpoints, log_end

EVENTS = 25_000
ACCOUNTS = 100
STALL_LOCK = 7_160_001

#: Counts the usage projector's statements; the second one waits for STALL_LOCK, which the test holds.
STALL = (
    "CREATE TABLE stall_count (n int NOT NULL)",
    "INSERT INTO stall_count VALUES (0)",
    "CREATE FUNCTION stall_second_span() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN UPDATE stall_count SET n = n + 1;"
    f" IF (SELECT n FROM stall_count) = 2 THEN PERFORM pg_advisory_xact_lock({STALL_LOCK}); END IF;"
    " RETURN NULL; END $$",
    "CREATE TRIGGER stall AFTER INSERT ON proj_usage_hourly FOR EACH STATEMENT EXECUTE FUNCTION stall_second_span()",
)


def _projections_run(url: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*credits_command(), "projections", "run"], env=dict(os.environ, DATABASE_URL=url),
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


async def _until(check: Callable[[], Awaitable[bool]], proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not await check():
        assert proc.poll() is None, f"credits projections run exited before {what}"
        assert time.monotonic() < deadline, f"never {what}"
        await asyncio.sleep(0.05)


async def test_a_projector_killed_mid_batch_resumes_without_double_counting(
    engine: AsyncEngine, ledger: Ledger, open_account: OpenAccount,
) -> None:
    accounts = [await open_account(prefix="kill") for _ in range(ACCOUNTS)]
    for start in range(0, EVENTS, 1_000):
        await ledger.execute_many([
            c.Meter(account_id=accounts[i % ACCOUNTS], operation="gpt-4o",
                    quantities={"input_tokens": 1_000 + i, "output_tokens": i % 700},
                    attribution=Attribution(agent=f"agent-{i % 7}", flow=f"flow-{i % 3}"))
            for i in range(start, start + 1_000)])
    end = await log_end(engine)
    url = engine.url.render_as_string(hide_password=False)

    async with engine.begin() as conn:
        for statement in STALL:
            await conn.execute(text(statement))
    async with engine.connect() as holder:
        await holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": STALL_LOCK})
        await holder.commit()
        proc = _projections_run(url)
        try:
            async def stalled() -> bool:
                async with engine.connect() as conn:
                    return bool(await conn.scalar(text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock' AND wait_event = 'advisory'")))

            await _until(stalled, proc, "stalled in the usage projector's second span")
            at_kill = await checkpoints(engine)
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
        # Mid-batch: one span of each projector committed, the usage projector's second one not.
        assert START < at_kill[USAGE.name] < end
        assert all(START < at < end for at in at_kill.values())
        await holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": STALL_LOCK})
        await holder.commit()

    # Waits for the killed process's backend, which rolls its transaction back when it finds the
    # client gone; then the second run folds without stalls.
    async with engine.begin() as conn:
        await conn.execute(text("DROP TRIGGER stall ON proj_usage_hourly"))
    assert await checkpoints(engine) == at_kill

    proc = _projections_run(url)
    try:
        async def at_end() -> bool:
            return all(at == end for at in (await checkpoints(engine)).values())

        await _until(at_end, proc, "reached the end of the log")
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0 and "Traceback" not in out, out

    for p in PROJECTORS:
        assert await differences(engine, p) == []
    async with engine.connect() as conn:
        used = (await conn.execute(text(
            "SELECT count(*) AS n, sum((data->>'cost_ucr')::bigint) AS cost FROM events"
            " WHERE type = 'UsageMetered'"))).one()
        executions = await conn.scalar(text("SELECT count(*) FROM proj_executions"))
        rolled = (await conn.execute(text(
            "SELECT sum(events) AS n, sum(cost_ucr) AS cost FROM proj_usage_hourly WHERE dim = 'account'"))).one()
        by_agent = await conn.scalar(text("SELECT sum(events) FROM proj_usage_hourly WHERE dim = 'agent'"))
        feed = await conn.scalar(text("SELECT count(*) FROM proj_activities WHERE kind = 'execution'"))
    assert used.n == EVENTS == executions == rolled.n == by_agent == feed
    assert rolled.cost == used.cost
