"""Two schedulers over a simulated 72 hours with a 5-hour outage: every hour of every running
deployment charged once, in order, none skipped; pauses and resumes respected, and an hour
paid stays paid across them."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import text

from ledger import commands as c
from ledger.clock import ManualClock, cycle_at
from ledger.service import Ledger
from ledger.verify import verify_account
from tests.ledger.conftest import T0
from tests.workers.conftest import drain
from workers.commands import dump
from workers.runner import Background
from workers.scheduler import Scheduler

CREDIT = 1_000_000


async def hours_by_deployment(ledger: Ledger, account_id: str) -> dict[str, list[int]]:
    async with ledger.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT data->>'deployment_id' AS d, (data->>'hour_index')::int AS h FROM events"
            " WHERE account_id = :a AND type = 'UsageMetered' AND data->>'deployment_id' IS NOT NULL"
            " ORDER BY version"), {"a": account_id})).all()
    out: dict[str, list[int]] = {}
    for r in rows:
        out.setdefault(r.d, []).append(r.h)
    return out


async def test_two_schedulers_72_hours_with_an_outage(background: Background, wledger: Ledger,
                                                      clock: ManualClock) -> None:
    acct = "fleet"
    await wledger.execute(c.OpenAccount(account_id=acct, name=acct, plan="free"))
    await wledger.execute(c.GrantCredits(account_id=acct, amount_ucr=2000 * CREDIT, source="purchase", reason="t"))
    await wledger.execute(c.StartDeployment(account_id=acct, deployment_id="always", instance_type="gpu-s"))
    await wledger.execute(c.StartDeployment(account_id=acct, deployment_id="paused", instance_type="gpu-s"))
    await wledger.execute(c.StartDeployment(account_id=acct, deployment_id="stopped", instance_type="cpu-s"))
    clock.advance(timedelta(minutes=30))
    await wledger.execute(c.StartDeployment(account_id=acct, deployment_id="late", instance_type="gpu-m"))

    background.start_worker(threads=4)
    first, second = background.scheduler(wledger), background.scheduler(wledger)
    outage = range(30, 35)
    for hour in range(1, 73):
        clock.set(T0 + timedelta(hours=hour, minutes=5))
        if hour not in outage:
            ticks = await asyncio.gather(first.tick(), second.tick())
            assert sum(not t.skipped for t in ticks) >= 1
            drain(background)
        clock.set(T0 + timedelta(hours=hour, minutes=10))
        if hour == 20:
            await wledger.execute(c.PauseDeployment(account_id=acct, deployment_id="paused"))
        if hour == 30:  # during the outage: 50 minutes of hour 20 are still paid, so nothing is charged
            await wledger.execute(c.ResumeDeployment(account_id=acct, deployment_id="paused"))
        if hour == 40:
            await wledger.execute(c.StopDeployment(account_id=acct, deployment_id="stopped"))

    charged = await hours_by_deployment(wledger, acct)
    # Charged once each, in order, none skipped (the outage's hours were caught up at 35:05).
    assert charged["always"] == list(range(73))          # hours 0..72, the last due at 72:00
    assert charged["late"] == list(range(72))            # started at 0:30: hour 72 is due at 72:30
    assert charged["stopped"] == list(range(41))         # stopped at 40:10
    # Paused at 20:10 with 20 h 10 min used of 21 h paid; resumed at 30:10, so hour 21 is due at
    # 31:00 (21 h used), then one each hour up to hour 62 at 72:00.
    assert charged["paused"] == list(range(63))
    views = {d.deployment_id: d for d in await wledger.deployments(acct)}
    assert {k: v.hours_charged for k, v in views.items()} == {"always": 73, "late": 72, "stopped": 41, "paused": 63}
    # Nothing else happened twice either: every key in the account's stream is unique.
    async with wledger.engine.connect() as conn:
        dupes = (await conn.execute(text(
            "SELECT idempotency_key, count(*) FROM events WHERE account_id = :a AND idempotency_key IS NOT NULL"
            " AND type = 'UsageMetered' GROUP BY idempotency_key HAVING count(*) > 1"), {"a": acct})).all()
    assert dupes == []


async def test_paid_time_survives_pauses_two_schedulers_at_once_and_a_restart(
        background: Background, wledger: Ledger, clock: ManualClock) -> None:
    acct, dep = "blinker", "blink"
    await wledger.execute(c.OpenAccount(account_id=acct, name=acct, plan="free"))
    await wledger.execute(c.GrantCredits(account_id=acct, amount_ucr=100 * CREDIT, source="purchase", reason="t"))
    await wledger.execute(c.StartDeployment(account_id=acct, deployment_id=dep, instance_type="gpu-s"))

    async def at(minutes: int, *commands: c.Command) -> None:
        clock.set(T0 + timedelta(minutes=minutes))
        for cmd in commands:
            await wledger.execute(cmd)

    pause = c.PauseDeployment(account_id=acct, deployment_id=dep)
    resume = c.ResumeDeployment(account_id=acct, deployment_id=dep)
    background.start_worker(threads=2)
    schedulers = [background.scheduler(wledger), background.scheduler(wledger)]

    async def both_tick(minutes: int) -> list[int]:
        """Both schedulers send what they find due at once (past the lease, which only saves work)."""
        clock.set(T0 + timedelta(minutes=minutes))
        await asyncio.gather(*(s._tick(clock.now()) for s in schedulers))
        drain(background)
        return (await hours_by_deployment(wledger, acct)).get(dep, [])

    # Paused after a minute, resumed a minute later: one hour charged in all, and 59 minutes left.
    await at(1, pause)
    await at(2, resume)
    assert await both_tick(5) == [0]
    assert await both_tick(60) == [0]      # 59 minutes used
    assert await both_tick(61) == [0, 1]   # 60 minutes used: hour 1
    assert await both_tick(61) == [0, 1]
    # Paused across the 2-hour mark (109 of 120 minutes used): nothing is charged while paused.
    await at(110, pause)
    assert await both_tick(180) == [0, 1]
    await at(260, resume)                   # 4:20, nothing charged: hour 2 falls due at 4:31
    assert await both_tick(270) == [0, 1]
    # The schedulers are down from 4:30 to 7:00 and restart: hours 2, 3 and 4 (due 4:31, 5:31,
    # 6:31) are caught up once each, by both at once.
    schedulers = [background.scheduler(wledger), background.scheduler(wledger)]
    assert await both_tick(420) == [0, 1, 2, 3, 4]
    assert await both_tick(450) == [0, 1, 2, 3, 4]
    assert await both_tick(451) == [0, 1, 2, 3, 4, 5]
    # Stopped: the partial hour was paid; nothing more.
    await at(460, c.StopDeployment(account_id=acct, deployment_id=dep))
    assert await both_tick(600) == [0, 1, 2, 3, 4, 5]
    assert (await verify_account(wledger.engine, acct)).clean


async def test_a_stop_charges_the_hours_the_scheduler_missed_once_even_racing_a_tick(
        background: Background, wledger: Ledger, clock: ManualClock) -> None:
    """The scheduler charges hour 1 at 1:00, then is down while the deployments run on to 4:20:
    each stop charges hours 2, 3 and 4 once, whichever of a racing tick's charges land first."""
    acct, broke = "racer", "broke"
    for a in (acct, broke):
        await wledger.execute(c.OpenAccount(account_id=a, name=a, plan="free"))  # 5 credits
    await wledger.execute(c.GrantCredits(account_id=acct, amount_ucr=100 * CREDIT, source="purchase", reason="t"))
    deployments = [(acct, "quiet"), (acct, "raced"), (acct, "half"), (broke, "broke")]
    for a, dep in deployments:
        await wledger.execute(c.StartDeployment(account_id=a, deployment_id=dep, instance_type="gpu-s"))
    scheduler = background.scheduler(wledger)
    background.start_worker(threads=2)
    clock.set(T0 + timedelta(hours=1))
    await scheduler._tick(clock.now())
    drain(background)
    await wledger.execute(c.Charge(account_id=broke, operation="email", quantity=3400))  # 0 credits left

    def stop(a: str, dep: str) -> c.StopDeployment:
        return c.StopDeployment(account_id=a, deployment_id=dep, idempotency_key=f"stop-{dep}")

    # Down until 4:20. Then a tick finds hours 2, 3 and 4 of every deployment due, and its message
    # reaches the worker only after the stops commit, except "half"'s hour 2, which lands first.
    clock.set(T0 + timedelta(hours=4, minutes=20))
    racing = await Scheduler(wledger, lambda batch: None, clock)._tick(clock.now())
    assert racing.hours == 4 * 3
    await wledger.execute(stop(acct, "quiet"))
    await wledger.execute(stop(acct, "raced"))
    await wledger.execute(next(cmd for cmd in racing.commands
                               if isinstance(cmd, c.ChargeDeploymentHour) and cmd.deployment_id == "half"))
    await wledger.execute(stop(acct, "half"))
    stopped = await wledger.execute(stop(broke, "broke"))  # never refused for lack of credits
    assert [e.type for e in stopped.events] == ["UsageMetered"] * 3 + ["DeploymentStopped"]
    background.actors.execute_commands.send([dump(cmd) for cmd in racing.commands])
    drain(background)
    clock.set(T0 + timedelta(hours=6))
    assert (await scheduler._tick(clock.now())).hours == 0
    drain(background)

    every = list(range(5))
    assert await hours_by_deployment(wledger, acct) == {"quiet": every, "raced": every, "half": every}
    assert await hours_by_deployment(wledger, broke) == {"broke": every}
    balance = await wledger.balance(broke)
    assert (balance.debt_ucr, balance.status) == (3 * 800_000, "in_debt")
    for a in (acct, broke):
        assert (await verify_account(wledger.engine, a)).clean


def test_cycle_at_counts_whole_months() -> None:
    assert cycle_at(T0, T0) == 0
    assert cycle_at(T0, T0 + timedelta(days=29)) == 0
    assert cycle_at(T0, T0 + timedelta(days=30)) == 1  # 1 Dec 09:00
    assert cycle_at(T0, T0.replace(month=12, hour=8)) == 0
    assert cycle_at(T0, T0.replace(year=2027, month=2)) == 3
