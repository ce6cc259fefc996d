"""A worker process killed with SIGKILL mid-charge: after a restart every deployment hour is
charged exactly once (the broker's heartbeat timeout is shortened so the dead worker's messages
come back within seconds)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from ledger import commands as c
from ledger.clock import ManualClock, SystemClock
from ledger.db import make_engine
from ledger.rate_cards import ensure_rate_card
from ledger.service import Ledger
from ledger.settings import Settings
from tests.ledger.cli.test_demo_embedded import REPO_ROOT, credits_command
from workers.runner import Background

pytestmark = pytest.mark.slow

CREDIT = 1_000_000
DEPLOYMENTS = 600
HOURS_DUE = 3


def start_worker(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([*credits_command(), "worker", "--no-relay", "--threads", "4"], env=env,
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


async def charged(engine: object, account_ids: list[str]) -> list[tuple[str, int, int]]:
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        rows = (await conn.execute(text(
            "SELECT data->>'deployment_id' AS d, (data->>'hour_index')::int AS h, count(*) AS n FROM events"
            " WHERE account_id = ANY(:a) AND type = 'UsageMetered' GROUP BY 1, 2 ORDER BY 1, 2"),
            {"a": account_ids})).all()
    return [(r.d, r.h, r.n) for r in rows]


async def test_sigkill_mid_charge_then_each_hour_exactly_once(settings: Settings) -> None:
    env = dict(os.environ, DATABASE_URL=settings.database_url or "", REDIS_URL=settings.redis_url or "",
               CREDITS_BROKER_NAMESPACE=settings.broker_namespace,
               CREDITS_BROKER_HEARTBEAT_TIMEOUT_MS="1500", CREDITS_BROKER_MAINTENANCE_CHANCE="1000000",
               # Each batch waits in the writer, so the kill lands while charges are in hand.
               CREDITS_BATCH_WINDOW_MS="400", CREDITS_BATCH_MAX="200")
    engine = make_engine(settings.database_url or "")
    past = ManualClock(datetime.now(UTC) - timedelta(hours=HOURS_DUE, minutes=5))
    setup = Ledger(engine, past, await ensure_rate_card(engine))
    await setup.start()
    accounts = [f"k{i}" for i in range(DEPLOYMENTS // 20)]
    for a in accounts:
        await setup.execute(c.OpenAccount(account_id=a, name=a, plan="free"))
        await setup.execute(c.GrantCredits(account_id=a, amount_ucr=1000 * CREDIT, source="purchase", reason="t"))
    await setup.execute_many([c.StartDeployment(account_id=accounts[i % len(accounts)], deployment_id=f"dep{i}",
                                                instance_type="cpu-s") for i in range(DEPLOYMENTS)])
    await setup.stop()

    now_ledger = Ledger(engine, SystemClock(), await ensure_rate_card(engine))
    await now_ledger.start()
    bg = Background(settings)
    first = second = None
    try:
        tick = await bg.scheduler(now_ledger).tick()
        assert tick.hours == DEPLOYMENTS * HOURS_DUE
        first = start_worker(env)
        # Kill it once it has charged some of the due hours but not all: mid-way through.
        deadline = time.monotonic() + 60
        while not len(await charged(engine, accounts)) > DEPLOYMENTS:
            assert time.monotonic() < deadline and first.poll() is None, "the first worker charged nothing"
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
        mid = await charged(engine, accounts)
        second = start_worker(env)
        deadline = time.monotonic() + 60
        while len(done := await charged(engine, accounts)) < DEPLOYMENTS * (HOURS_DUE + 1):
            assert time.monotonic() < deadline, f"only {len(done)} hours charged after the restart"
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # any duplicate from a redelivery would land by now
        done = await charged(engine, accounts)
        assert all(n == 1 for _, _, n in done), [row for row in done if row[2] != 1]
        assert sorted((d, h) for d, h, _ in done) == sorted(
            (f"dep{i}", h) for i in range(DEPLOYMENTS) for h in range(HOURS_DUE + 1))
        # The kill really landed mid-way: some hours were charged before it, some only after.
        assert DEPLOYMENTS < len(mid) < DEPLOYMENTS * (HOURS_DUE + 1), len(mid)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        bg.close()
        await now_ledger.stop()
        await engine.dispose()
