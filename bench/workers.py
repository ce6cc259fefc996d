"""Workers benchmark: one hour's sweep of 10,000 running deployments, and the relay's lag.

Run ``python -m bench.workers [--runs 3] [--deployments 10000] [--database-url URL]``.

It recreates a scratch database (``credits_bench_workers``), then measures:

1. **The hourly sweep.** Per run, 10,000 fresh deployments (over 1,000 funded accounts) are
   started 1 h 5 min in the past (a ledger on a manual clock), so hour 1 of each is due now.
   ``N`` worker processes (``credits worker --no-relay``, N = 1 and 2) are started and waited
   for; then one scheduler tick (the real clock) finds the 10,000 due hours and sends them in
   chunks; the clock stops when every deployment has ``hours_charged = 2``. Reported: the tick
   and the time to charge every hour, per N.
2. **The relay's lag** under a steady write load: metered usage at a fixed rate (open loop, one
   command every 1/rate s over 100 accounts) while the relay runs in the same process with a
   real broker; the lag of an event is the time from its ``recorded_at`` (its batch's commit, to
   a few ms) to the moment the relay handed its batch to the broker.

Aims: a 10,000-deployment sweep in under 10 s; relay lag p99 under 1 s at 1,000 events/s.
Figures are medians of ``--runs``; JSON goes to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import text

from bench.write_path import git_commit, libpq_url, with_database
from ledger import commands as c
from ledger import log as ledger_log
from ledger.clock import ManualClock, SystemClock
from ledger.db import make_engine, migrate
from ledger.rate_cards import ensure_rate_card
from ledger.service import Ledger
from ledger.settings import Settings
from workers import relay as relay_module
from workers.relay import Plan
from workers.runner import Background

BENCH_DB = "credits_bench_workers"
CREDIT = 1_000_000


async def recreate(server_url: str) -> str:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(libpq_url(server_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    finally:
        await conn.close()
    url = with_database(server_url, BENCH_DB)
    await asyncio.to_thread(migrate, url)
    return url


def start_workers(n: int, env: dict[str, str]) -> list[subprocess.Popen[str]]:
    return [subprocess.Popen([sys.executable, "-m", "ledger.cli", "worker", "--no-relay"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(n)]


def wait_ready(procs: Sequence[subprocess.Popen[str]], timeout: float = 60.0) -> None:  # float-ok: a duration
    assert all(p.stdout is not None for p in procs)
    deadline = time.monotonic() + timeout
    for p in procs:
        while True:
            line = p.stdout.readline() if p.stdout else ""
            if "worker running" in line:
                break
            if not line and p.poll() is not None:
                raise RuntimeError("a worker exited before it was ready")
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")


def stop_workers(procs: Sequence[subprocess.Popen[str]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


async def setup_deployments(url: str, run: str, deployments: int, accounts: int) -> list[str]:
    """``deployments`` running deployments started 1 h 5 min ago, over ``accounts`` accounts."""
    engine = make_engine(url)
    past = ManualClock(datetime.now(UTC) - timedelta(hours=1, minutes=5))
    ledger = Ledger(engine, past, await ensure_rate_card(engine))
    await ledger.start()
    try:
        ids = [f"{run}-a{i}" for i in range(accounts)]
        for chunk in range(0, accounts, 250):
            part = ids[chunk:chunk + 250]
            await ledger.execute_many([c.OpenAccount(account_id=a, name=a, plan="free") for a in part])
            await ledger.execute_many([c.GrantCredits(account_id=a, amount_ucr=10_000 * CREDIT, source="purchase",
                                                      reason="bench") for a in part])
        starts = [c.StartDeployment(account_id=ids[i % accounts], deployment_id=f"{run}-d{i}", instance_type="cpu-s")
                  for i in range(deployments)]
        for chunk in range(0, deployments, 500):
            await ledger.execute_many(starts[chunk:chunk + 500])
        return ids
    finally:
        await ledger.stop()
        await engine.dispose()


async def sweep_once(url: str, redis_url: str, workers: int, deployments: int, accounts: int) -> dict[str, float]:
    run = f"r{secrets.token_hex(3)}"
    ids = await setup_deployments(url, run, deployments, accounts)
    namespace = f"credits-bench-{run}"
    settings = Settings(database_url=url, redis_url=redis_url, broker_namespace=namespace)
    env = dict(os.environ, DATABASE_URL=url, REDIS_URL=redis_url, CREDITS_BROKER_NAMESPACE=namespace)
    procs = start_workers(workers, env)
    bg = Background(settings)
    engine = make_engine(url)
    ledger = Ledger(engine, SystemClock(), await ensure_rate_card(engine))
    await ledger.start()
    try:
        await asyncio.to_thread(wait_ready, procs)
        began = time.perf_counter()
        tick = await bg.scheduler(ledger).tick()
        ticked = time.perf_counter()
        assert tick.hours == deployments, tick.hours
        while True:
            async with engine.connect() as conn:
                done = (await conn.execute(text(
                    "SELECT count(*) FROM deployments WHERE account_id = ANY(:a) AND hours_charged >= 2"),
                    {"a": ids})).scalar_one()
            if done >= deployments:
                break
            if time.perf_counter() - began > 600:
                raise RuntimeError(f"only {done} of {deployments} hours charged in 10 minutes")
            await asyncio.sleep(0.05)
        finished = time.perf_counter()
        return {"tick_s": ticked - began, "sweep_s": finished - began, "hours": deployments}
    finally:
        stop_workers(procs)
        bg.close()
        await ledger.stop()
        await engine.dispose()


async def relay_lag(url: str, redis_url: str, rate: int, seconds: float) -> dict[str, Any]:  # float-ok
    """Metered usage at ``rate``/s for ``seconds`` while the relay follows; lag per event."""
    run = f"l{secrets.token_hex(3)}"
    engine = make_engine(url)
    ledger = Ledger(engine, SystemClock(), await ensure_rate_card(engine))
    await ledger.start()
    bg = Background(Settings(database_url=url, redis_url=redis_url, broker_namespace=f"credits-bench-{run}"))
    accounts = [f"{run}-a{i}" for i in range(100)]
    await ledger.execute_many([c.OpenAccount(account_id=a, name=a, plan="free") for a in accounts])
    await ledger.execute_many([c.GrantCredits(account_id=a, amount_ucr=10_000 * CREDIT, source="purchase",
                                              reason="bench") for a in accounts])
    lags: list[float] = []
    pending: list[Any] = []
    real_read_log = ledger_log.read_log
    all_timed = asyncio.Event()

    async def read_log(conn: Any, after: Any, limit: int = 1000) -> Any:
        entries = await real_read_log(conn, after, limit)
        pending.extend(entries)
        return entries

    send = bg.relay(ledger).send

    def timed_send(p: Plan) -> None:
        send(p)
        handed = datetime.now(UTC)
        lags.extend((handed - e.event.recorded_at).total_seconds() for e in pending
                    if e.event.account_id.startswith(run) and e.event.type == "UsageMetered")
        pending.clear()
        if len(lags) >= n:
            loop.call_soon_threadsafe(all_timed.set)

    # The relay calls read_log through its module: wrap it there to see each batch's entries.
    setattr(relay_module, "read_log", read_log)  # noqa: B010
    loop = asyncio.get_running_loop()
    n = int(rate * seconds)
    relay = relay_module.Relay(engine, timed_send)
    stop = asyncio.Event()
    # Start from the end of the log as it is now: only this phase's events are timed.
    while await relay.run_once():
        pass
    follower = asyncio.create_task(relay.run(stop, idle_s=0.05))
    tasks: list[asyncio.Task[Any]] = []
    start = time.perf_counter()
    try:
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(ledger.execute(c.Meter(
                account_id=accounts[i % len(accounts)], operation="email", quantity=1))))
        await asyncio.gather(*tasks)
        offered = n / (time.perf_counter() - start)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_timed.wait(), timeout=30)
    finally:
        stop.set()
        await follower
        setattr(relay_module, "read_log", real_read_log)  # noqa: B010
        bg.close()
        await ledger.stop()
        await engine.dispose()
    lags.sort()
    return {"events": n, "timed": len(lags), "offered_per_s": offered,
            "p50_ms": lags[len(lags) // 2] * 1000 if lags else None,
            "p99_ms": lags[int(len(lags) * 0.99) - 1] * 1000 if lags else None,
            "max_ms": lags[-1] * 1000 if lags else None}


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


async def amain(args: argparse.Namespace) -> int:
    console = Console()
    server = args.database_url or os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
    redis_url = args.redis_url or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    url = await recreate(server)
    results: dict[str, Any] = {"commit": git_commit(), "deployments": args.deployments, "runs": args.runs,
                               "sweeps": {}, "relay": []}
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("sweeps", total=args.runs * 2 + args.runs)
        for workers in (1, 2):
            runs = []
            for _ in range(args.runs):
                progress.update(task, description=f"sweep, {workers} worker(s)")
                runs.append(await sweep_once(url, redis_url, workers, args.deployments, args.accounts))
                progress.advance(task)
            results["sweeps"][str(workers)] = runs
        for _ in range(args.runs):
            progress.update(task, description=f"relay lag at {args.rate}/s")
            results["relay"].append(await relay_lag(url, redis_url, args.rate, args.seconds))
            progress.advance(task)

    table = Table(title=f"Workers ({args.deployments:,} deployments; medians of {args.runs} runs)")
    for col in ("figure", "tick s", "sweep s", "aim", "verdict"):
        table.add_column(col)
    summary: dict[str, Any] = {}
    for workers, runs in results["sweeps"].items():
        tick = median([r["tick_s"] for r in runs])
        sweep = median([r["sweep_s"] for r in runs])
        summary[f"sweep_{workers}"] = {"tick_s": tick, "sweep_s": sweep}
        table.add_row(f"hourly sweep, {workers} worker process(es)", f"{tick:.2f}", f"{sweep:.2f}", "< 10 s",
                      "PASS" if sweep < 10 else "MISS")
    p50 = median([r["p50_ms"] for r in results["relay"] if r["p50_ms"] is not None])
    p99 = median([r["p99_ms"] for r in results["relay"] if r["p99_ms"] is not None])
    offered = median([r["offered_per_s"] for r in results["relay"]])
    summary["relay"] = {"p50_ms": p50, "p99_ms": p99, "offered_per_s": offered}
    table.add_row(f"relay lag at {offered:,.0f} events/s: p50 {p50:.0f} ms", "", f"p99 {p99:.0f} ms", "p99 < 1 s",
                  "PASS" if p99 < 1000 else "MISS")
    console.print(table)
    results["summary"] = summary
    out = Path(args.out)
    await asyncio.to_thread(out.parent.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(out.write_text, json.dumps(results, indent=2, default=str))
    console.print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--deployments", type=int, default=10_000)
    p.add_argument("--accounts", type=int, default=1_000)
    p.add_argument("--rate", type=int, default=1_000, help="relay phase: events per second")
    p.add_argument("--seconds", type=float, default=10.0, help="relay phase: length")
    p.add_argument("--database-url")
    p.add_argument("--redis-url")
    p.add_argument("--out", default="bench/results/workers.json")
    return asyncio.run(amain(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
