"""Read-model benchmark: rebuild rate beside an asyncpg paged fold, catch-up lag under a steady write
load, and p50/p99 of balance, ledger, history and analytics reads.

Run ``python -m bench.projections [--quick] [--events N] [--accounts N] [--database-url URL] [--out PATH]``.

It drops and recreates a scratch database (``credits_bench_projections``) on the server, migrates
it, loads the sample rate card and writes the log through the ledger (``execute_many`` of
``Meter`` commands: 1,000,000 events on 10,000 accounts by default, spread over 30 days, with
agent, member and flow attributions), plus one account with a year of hourly usage. Then:

1. rebuild: ``projections.rebuild.rebuild`` of each projector from position 0, events/s, beside
   the same events read in log order by asyncpg in pages and folded in Python into hourly sums
   (the usage rollup's work done client-side): the baseline, in the same run;
2. lag: ``credits projections run`` in its own process while this one writes ``--rate`` events/s
   for ``--lag-seconds``; every 50 ms the freshness lag of the read models (how long the oldest
   event not yet folded has waited, the figure on /metrics), p50/p99;
3. reads, one caller: ``Ledger.balance``, ``Ledger.ledger_page``, a history page (newest 50
   executions, ``projections.queries.history``) and analytics for the account with a year of hourly
   usage (a 30-day series by day and operation, the 30-day total by model, the top 10 requests: the
   SQL of those figures; the JSON says which path each read took).

Figures are printed (with met/not met against the aims) and written as JSON. The machine may be
shared: compare the rebuild with its baseline of the same run, not across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import libpq_url, recreate_database
from ledger import commands as c
from ledger.clock import ManualClock, SystemClock
from ledger.db import make_engine, migrate
from ledger.events import Attribution
from ledger.rate_cards import ensure_rate_card
from ledger.service import Ledger
from ledger.store import Outcome
from projections.catalogue import PROJECTORS
from projections.freshness import status
from projections.rebuild import rebuild

BENCH_DB = "credits_bench_projections"
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
YEAR_ACCOUNT = "analytics-year"
OPERATIONS = (("gpt-4o", True), ("claude-haiku", True), ("email", False), ("sms", False))
AGENTS = ("support", "triage", "writer", "coder", "research")
MEMBERS = ("ann", "bo", None)
FLOWS = ("onboarding", "digest", "alerts")
#: Commands per ``execute_many`` while generating, and how many run at once.
CHUNK = 2_000
PARALLEL = 4
#: Events per page of the asyncpg baseline.
PAGE = 20_000

AIMS = {"rebuild_events_per_s": 100_000, "analytics_p99_ms": 50, "lag_p99_ms": 1_000}

console = Console() if sys.stdout.isatty() else Console(width=150)


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def git_commit() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "ledger", "projections"], capture_output=True,
                               text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _meter(rng: random.Random, account: str, at: datetime) -> c.Meter:
    operation, tokens = OPERATIONS[rng.randrange(len(OPERATIONS))]
    if tokens:
        quantities = {"input_tokens": rng.randint(100, 20_000), "output_tokens": rng.randint(10, 2_000)}
    else:
        quantities = {"messages": rng.randint(1, 20)}
    return c.Meter(account_id=account, operation=operation, quantities=quantities, occurred_at=at,
                   attribution=Attribution(agent=rng.choice(AGENTS), member=rng.choice(MEMBERS),
                                           flow=rng.choice(FLOWS)))


def _check(results: Sequence[object]) -> None:
    bad = [r for r in results if not isinstance(r, Outcome)]
    if bad:
        raise RuntimeError(f"a command was refused: {bad[0]!r}")


async def generate(ledger: Ledger, accounts: list[str], events: int, progress: Progress) -> float:
    """Open ``accounts`` and write ``events`` metered events over them, plus a year of hourly usage
    for YEAR_ACCOUNT; the metered events/s of the write."""
    task = progress.add_task("opening accounts", total=len(accounts) + 1)
    for i in range(0, len(accounts), CHUNK):
        chunk = accounts[i:i + CHUNK]
        _check(await ledger.execute_many([c.OpenAccount(account_id=a, name=a) for a in chunk]))
        progress.advance(task, len(chunk))
    _check(await ledger.execute_many([c.OpenAccount(account_id=YEAR_ACCOUNT, name="a year of hourly usage")]))
    progress.advance(task)

    # A ledger whose clock walks through the past year (usage may be dated at most 90 days back).
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    clock = ManualClock(now - timedelta(days=365))
    year = Ledger(ledger.engine, clock, ledger.card)
    await year.start()
    rng = random.Random(16)
    task = progress.add_task("a year of hourly usage", total=365 * 24)
    try:
        for start in range(365 * 24, 0, -(CHUNK // 2)):
            hours = range(start, max(start - CHUNK // 2, 0), -1)
            clock.set(now - timedelta(hours=hours[-1] - 1))
            _check(await year.execute_many([_meter(rng, YEAR_ACCOUNT, now - timedelta(hours=h, minutes=m))
                                            for h in hours for m in (10, 40)]))
            progress.advance(task, len(hours))
    finally:
        await year.stop()

    task = progress.add_task(f"{events:,} metered events", total=events)
    queue = list(range(0, events, CHUNK))
    began = time.perf_counter()

    async def worker(seed: int) -> None:
        wrng = random.Random(seed)
        while queue:
            start = queue.pop()
            n = min(CHUNK, events - start)
            _check(await ledger.execute_many([
                _meter(wrng, accounts[wrng.randrange(len(accounts))],
                       now - timedelta(minutes=wrng.randrange(30 * 1440)))
                for _ in range(n)]))
            progress.advance(task, n)

    await asyncio.gather(*(worker(i) for i in range(PARALLEL)))
    return events / (time.perf_counter() - began)


# ---- 1. rebuild vs an asyncpg paged fold ------------------------------------------------------------


async def rebuild_all(engine: AsyncEngine, progress: Progress) -> dict[str, dict[str, float]]:
    out = {}
    for p in PROJECTORS:
        task = progress.add_task(f"rebuild {p.name}", total=None)

        def advance(n: int, task: TaskID = task) -> None:
            progress.advance(task, n)

        began = time.perf_counter()
        done = await rebuild(engine, p, on_span=advance)
        seconds = time.perf_counter() - began
        progress.remove_task(task)
        rate = done.events / seconds
        out[p.name] = {"events": done.events, "seconds": round(seconds, 2), "events_per_s": round(rate)}
        console.print(f"rebuilt {p.name}: {done.events:,} events in {seconds:.1f} s, {rate:,.0f} events/s")
    return out


async def paged_fold(dsn: str, progress: Progress) -> dict[str, float]:
    """Every event in log order, ``PAGE`` at a time over asyncpg, folded in Python into hourly sums by
    account, attribution and operation (what the usage projector keeps)."""
    conn = await asyncpg.connect(dsn)
    task = progress.add_task("asyncpg paged fold", total=None)
    sums: dict[tuple[str, str, str, str, datetime], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    events = 0
    began = time.perf_counter()
    try:
        tx, pos = 0, 0
        while True:
            rows = await conn.fetch(
                "SELECT tx_id::text::bigint AS tx, position, account_id, type, occurred_at, data::text AS data"
                " FROM events WHERE (tx_id, position) > ($1::bigint::text::xid8, $2)"
                " ORDER BY tx_id, position LIMIT $3", tx, pos, PAGE)
            if not rows:
                break
            for r in rows:
                if r["type"] != "UsageMetered":
                    continue
                d = json.loads(r["data"])
                q, a = d.get("quantities") or {}, d.get("attribution") or {}
                hour = r["occurred_at"].replace(minute=0, second=0, microsecond=0)
                deployment = d.get("deployment_id") or a.get("deployment")
                for dim, key in (("account", ""), ("agent", a.get("agent")), ("member", a.get("member")),
                                 ("flow", a.get("flow")), ("deployment", deployment)):
                    if key is None:
                        continue
                    s = sums[(r["account_id"], dim, key, d["operation"], hour)]
                    s[0] += 1
                    s[1] += int(d["cost_ucr"])
                    s[2] += int(q.get("input_tokens", 0))
                    s[3] += int(q.get("output_tokens", 0))
            events += len(rows)
            tx, pos = rows[-1]["tx"], rows[-1]["position"]
            progress.advance(task, len(rows))
    finally:
        await conn.close()
        progress.remove_task(task)
    seconds = time.perf_counter() - began
    console.print(f"asyncpg paged fold: {events:,} events in {seconds:.1f} s, {events / seconds:,.0f} events/s"
                  f" ({len(sums):,} hourly rows)")
    return {"events": events, "seconds": round(seconds, 2), "events_per_s": round(events / seconds),
            "rows": len(sums)}


# ---- 2. catch-up lag under a steady write load ------------------------------------------------------


async def lag_under_load(engine: AsyncEngine, ledger: Ledger, url: str, accounts: list[str], rate: int,
                         seconds: float, progress: Progress) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ledger.cli", "projections", "run", env=dict(os.environ, DATABASE_URL=url),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    lags: list[int] = []
    written = 0
    try:
        # Caught up before the load starts (the rebuilds left every checkpoint at the end).
        deadline = time.monotonic() + 60
        while True:
            async with engine.connect() as conn:
                if max(f.lag_ms for f in (await status(conn, PROJECTORS)).values()) == 0:
                    break
            if time.monotonic() > deadline or proc.returncode is not None:
                raise RuntimeError("credits projections run did not catch up before the load")
            await asyncio.sleep(0.1)

        stop = asyncio.Event()
        rng = random.Random(7)
        tick = 0.01  # a batch of rate / 100 every 10 ms
        per_tick = max(1, round(rate * tick))

        async def write() -> None:
            nonlocal written
            began = time.perf_counter()
            n = 0
            while not stop.is_set():
                batch = [_meter(rng, accounts[rng.randrange(len(accounts))], datetime.now(UTC))
                         for _ in range(per_tick)]
                _check(await ledger.execute_many(batch))
                written += per_tick
                n += 1
                await asyncio.sleep(max(0.0, began + n * tick - time.perf_counter()))

        async def sample() -> None:
            while not stop.is_set():
                async with engine.connect() as conn:
                    lags.append(max(f.lag_ms for f in (await status(conn, PROJECTORS)).values()))
                await asyncio.sleep(0.05)

        task = progress.add_task(f"lag at {rate:,} events/s", total=round(seconds))
        tasks = [asyncio.create_task(write()), asyncio.create_task(sample())]
        began = time.perf_counter()
        while (elapsed := time.perf_counter() - began) < seconds:
            await asyncio.sleep(0.5)
            progress.update(task, completed=min(round(elapsed), round(seconds)))
        stop.set()
        await asyncio.gather(*tasks)
        achieved = written / (time.perf_counter() - began)
        progress.remove_task(task)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    out = {"target_events_per_s": rate, "achieved_events_per_s": round(achieved), "seconds": seconds,
           "samples": len(lags), "p50_ms": pct(lags, 50), "p99_ms": pct(lags, 99), "max_ms": max(lags, default=0)}
    console.print(f"lag at {achieved:,.0f} events/s: p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms"
                  f" ({len(lags)} samples)")
    return out


# ---- 3. reads ------------------------------------------------------------------------------------------


async def timed(n: int, fn: Callable[[int], Awaitable[object]]) -> dict[str, float]:
    for i in range(min(20, n)):  # warm-up: connections, prepared statements, caches
        await fn(i)
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        await fn(i)
        lat.append(time.perf_counter() - t0)
    return {"n": n, "p50_ms": round(1000 * pct(lat, 50), 3), "p99_ms": round(1000 * pct(lat, 99), 3)}


async def reads(engine: AsyncEngine, ledger: Ledger, accounts: list[str], n: int) -> dict[str, Any]:
    """p50/p99 of each read, one caller, through the modules the API calls: history through
    ``projections.queries.history`` and analytics through ``projections.queries.usage`` (each
    with its freshness, in one snapshot)."""
    from projections.queries.history import executions
    from projections.queries.usage import analytics

    rng = random.Random(3)
    picks = [accounts[rng.randrange(len(accounts))] for _ in range(n + 20)]

    out: dict[str, Any] = {
        "paths": {"history": "projections.queries.history.executions",
                  "analytics": "projections.queries.usage.analytics (30 days)"},
        "balance": await timed(n, lambda i: ledger.balance(picks[i])),
        "ledger_page": await timed(n, lambda i: ledger.ledger_page(picks[i], limit=50)),
        "history_page": await timed(n, lambda i: executions(engine, picks[i], limit=50)),
        "history_page_year_account": await timed(n, lambda i: executions(engine, YEAR_ACCOUNT, limit=50)),
        "analytics_30d_year_account": await timed(n, lambda i: analytics(ledger, YEAR_ACCOUNT, 30)),
    }
    async with engine.connect() as conn:
        out["year_account_hourly_rows"] = await conn.scalar(text(
            "SELECT count(*) FROM proj_usage_hourly WHERE account_id = :a"), {"a": YEAR_ACCOUNT})
    return out


# ---- entry point ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.projections", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="50,000 events on 1,000 accounts, 5 s of lag: a smoke test")
    p.add_argument("--events", type=int, default=None, help="metered events to rebuild (default 1,000,000)")
    p.add_argument("--accounts", type=int, default=None, help="accounts they spread over (default 10,000)")
    p.add_argument("--rate", type=int, default=1_000, help="events/s written while measuring lag (default 1,000)")
    p.add_argument("--lag-seconds", type=float, default=None, help="length of the lag phase (default 25, 5 quick)")
    p.add_argument("--reads", type=int, default=None, help="samples per read (default 1,000, 200 quick)")
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_SERVER_URL),
                   help=f"any database on the server to use; {BENCH_DB} is dropped and recreated on it")
    p.add_argument("--out", type=Path, default=None, help="JSON output (default bench/results/projections.json)")
    return p.parse_args(argv)


async def vacuum(url: str) -> int:
    """What autovacuum would have done by now (not timed); the events in the log."""
    conn = await asyncpg.connect(libpq_url(url))
    try:
        await conn.execute("VACUUM ANALYZE")
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


def verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


async def amain(args: argparse.Namespace) -> int:
    events = args.events or (50_000 if args.quick else 1_000_000)
    n_accounts = args.accounts or (1_000 if args.quick else 10_000)
    lag_seconds = args.lag_seconds or (5.0 if args.quick else 25.0)
    n_reads = args.reads or (200 if args.quick else 1_000)
    url = with_database(args.database_url, BENCH_DB)
    began = time.perf_counter()
    console.print(f"[bold]projections[/bold]: {events:,} events on {n_accounts:,} accounts, lag at {args.rate:,}/s"
                  f" for {lag_seconds:g} s, {n_reads} reads each")
    await recreate_database(args.database_url, BENCH_DB)
    await asyncio.to_thread(migrate, url)
    engine = make_engine(url, pool_size=10)
    accounts = [f"acct-{i:05d}" for i in range(n_accounts)]
    result: dict[str, Any] = {
        "benchmark": "projections", "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": await asyncio.to_thread(git_commit),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
        "config": {"events": events, "accounts": n_accounts, "year_account_events": 365 * 24 * 2,
                   "lag_rate": args.rate, "lag_seconds": lag_seconds, "reads": n_reads},
    }
    try:
        ledger = Ledger(engine, SystemClock(), await ensure_rate_card(engine))
        await ledger.start()
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=console, transient=True) as progress:
                result["write_events_per_s"] = round(await generate(ledger, accounts, events, progress))
                result["log_events"] = await vacuum(url)
                console.print(f"wrote {result['log_events']:,} events ({result['write_events_per_s']:,} metered/s)")
                result["baseline"] = await paged_fold(libpq_url(url), progress)
                result["rebuild"] = await rebuild_all(engine, progress)
                await vacuum(url)
                result["lag"] = await lag_under_load(engine, ledger, url, accounts, args.rate, lag_seconds, progress)
                result["reads"] = await reads(engine, ledger, accounts, n_reads)
        finally:
            await ledger.stop()
    finally:
        await engine.dispose()

    base = result["baseline"]["events_per_s"]
    t = Table(title="rebuild from position 0 (events/s; the log's events, every type)")
    aim = AIMS["rebuild_events_per_s"]
    for col in ("projector", "events", "seconds", "events/s", "vs asyncpg fold", f"aim >= {aim:,}/s"):
        t.add_column(col, justify="right")
    for name, r in result["rebuild"].items():
        r["ratio_to_baseline"] = round(r["events_per_s"] / base, 2)
        t.add_row(name, f"{r['events']:,}", f"{r['seconds']:.1f}", f"{r['events_per_s']:,}",
                  f"{r['ratio_to_baseline']:.2f}x", verdict(r["events_per_s"] >= aim))
    b = result["baseline"]
    t.add_row("asyncpg paged fold", f"{b['events']:,}", f"{b['seconds']:.1f}", f"{base:,}", "1.00x", "")
    console.print(t)
    t = Table(title="reads, one caller (ms)")
    for col in ("read", "p50", "p99", "aim"):
        t.add_column(col, justify="right")
    rd = result["reads"]
    for name in ("balance", "ledger_page", "history_page", "history_page_year_account", "analytics_30d_year_account"):
        goal = (f"p99 < {AIMS['analytics_p99_ms']} ms {verdict(rd[name]['p99_ms'] < AIMS['analytics_p99_ms'])}"
                if name.startswith("analytics") else "")
        t.add_row(name, f"{rd[name]['p50_ms']:.2f}", f"{rd[name]['p99_ms']:.2f}", goal)
    console.print(t)
    lag = result["lag"]
    console.print(f"lag at {lag['achieved_events_per_s']:,} events/s: p50 {lag['p50_ms']} ms, p99 {lag['p99_ms']} ms"
                  f" (aim p99 < {AIMS['lag_p99_ms']} ms: {verdict(lag['p99_ms'] < AIMS['lag_p99_ms'])});"
                  f" analytics read as {rd['paths']['analytics']}")
    result["aims"] = {
        "rebuild_events_per_s": {n: r["events_per_s"] >= aim for n, r in result["rebuild"].items()},
        "analytics_p99_ms": rd["analytics_30d_year_account"]["p99_ms"] < AIMS["analytics_p99_ms"],
        "lag_p99_ms": lag["p99_ms"] < AIMS["lag_p99_ms"],
    }
    result["elapsed_s"] = round(time.perf_counter() - began, 1)
    out: Path = args.out or Path("bench/results/projections.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(out.write_text, json.dumps(result, indent=2, default=str) + "\n")
    console.print(f"wrote {out} ({result['elapsed_s']:.0f} s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
