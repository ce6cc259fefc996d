"""Write-path benchmark: the group-commit ledger against plain PostgreSQL baselines, side by side.

Run ``python -m bench.write_path [--runs 5] [--quick] [--database-url URL] [--out PATH]``.

It drops and recreates a scratch database (``credits_bench``) on the server, migrates it, loads
the sample rate card, opens 1,000 funded accounts plus one hot account, and measures in one
process, each figure the median of ``--runs`` runs:

A. gated charges/s (``Ledger.execute(Charge)``) with 1, 16 and 64 concurrent callers over 1,000
   accounts and over one hot account, against one asyncpg transaction per charge
   (SELECT ... FOR UPDATE, INSERT a jsonb event row, UPDATE the balance, COMMIT);
B. metered events/s (``Ledger.execute_many(Meter)``) in batches of 1, 100 and 1,000 with 10 %
   repeated idempotency keys, against a bare ``INSERT ... SELECT FROM unnest(...)`` (the floor);
C. single-event appends/s (a ``Meter`` of one email, no key) with 64 callers, against the
   ``eventsourcing`` library's PostgreSQL recorders appending one ``StoredEvent`` per call from
   64 threads.

Every phase runs for a fixed time. Figures are printed (with PASS/MISS against the aims) and
written as JSON. ``--sweep`` instead compares writer settings (window x concurrency) on the
phases that matter for tuning; ``--profile`` runs one phase under cProfile.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import libpq_url, recreate_database
from ledger import commands as c
from ledger.clock import SystemClock
from ledger.db import make_engine, migrate
from ledger.errors import LedgerError
from ledger.events import UsageMetered
from ledger.rate_cards import ensure_rate_card
from ledger.rates import RateCard
from ledger.service import Ledger
from ledger.settings import Settings
from ledger.store import Outcome

BENCH_DB = "credits_bench"
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
N_ACCOUNTS = 1_000
HOT = "hot-account"
SPREAD = [f"acct-{i:04d}" for i in range(N_ACCOUNTS)]
FUNDING_UCR = 10**15  # a billion credits each: no charge is ever refused
OPERATION = "email"  # 1 credit per message on the sample card
CALLERS = (1, 16, 64)
BATCHES = (1, 100, 1_000)
DUP_RATE = 0.10
HISTORY = 20_000  # metered commands kept to draw repeated keys from

#: (label, phase key of the ledger figure, phase key of the reference, aim)
AIMS: tuple[tuple[str, str, str, float], ...] = (
    ("group commit vs one tx per charge, 64 callers, 1,000 accounts", "A.ledger.spread.64",
     "A.baseline.spread.64", 5.0),
    ("group commit vs one tx per charge, 64 callers, hot account", "A.ledger.hot.64", "A.baseline.hot.64", 10.0),
    ("metered ingest vs bare unnest INSERT, batches of 1,000", "B.ledger.1000", "B.floor.1000", 0.5),
    ("single-event appends vs eventsourcing PostgresApplicationRecorder, 64 callers", "C.ledger.64",
     "C.es_application.64", 20.0),
)

# Wide enough for the tables when the output is piped to a file.
console = Console() if sys.stdout.isatty() else Console(width=150)


# ---- measurement ---------------------------------------------------------------------------------


@dataclass
class Sample:
    """One phase of one run."""

    ops: int
    seconds: float
    latencies_s: list[float]
    batch_sizes: list[int] = field(default_factory=list)
    errors: int = 0
    #: CPU used during the phase, in cores: this process, the PostgreSQL server, the whole machine.
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"ops": self.ops, "seconds": round(self.seconds, 4), "rate": round(self.rate, 1),
                "p50_ms": ms(pct(self.latencies_s, 50)), "p99_ms": ms(pct(self.latencies_s, 99)),
                "errors": self.errors, "cpu_cores": self.cpu,
                "batches": batch_summary(self.batch_sizes) if self.batch_sizes else None}


@dataclass
class Phase:
    """Every run of one measured thing."""

    key: str
    group: str
    system: str
    unit: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(s.rate for s in self.samples)

    @property
    def p50_ms(self) -> float:
        return statistics.median(ms(pct(s.latencies_s, 50)) for s in self.samples)

    @property
    def p99_ms(self) -> float:
        return statistics.median(ms(pct(s.latencies_s, 99)) for s in self.samples)

    @property
    def batch_sizes(self) -> list[int]:
        return [b for s in self.samples for b in s.batch_sizes]

    @property
    def cpu(self) -> dict[str, float]:
        keys = self.samples[0].cpu.keys() if self.samples else ()
        return {k: round(statistics.median(s.cpu.get(k, 0.0) for s in self.samples), 2) for k in keys}

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, "system": self.system, "unit": self.unit,
                "median_rate": round(self.rate, 1), "median_p50_ms": round(self.p50_ms, 3),
                "median_p99_ms": round(self.p99_ms, 3), "median_cpu_cores": self.cpu,
                "batch_sizes": batch_summary(self.batch_sizes) if self.batch_sizes else None,
                "runs": [s.to_json() for s in self.samples]}


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


_BUCKETS = ((1, 1), (2, 4), (5, 16), (17, 64), (65, 256), (257, 10**9))


def batch_summary(sizes: Sequence[int]) -> dict[str, Any]:
    """Count, mean, percentiles and a histogram of the writer's committed batch sizes."""
    hist = {(f"{lo}" if lo == hi else f"{lo}+" if hi >= 10**9 else f"{lo}-{hi}"):
            sum(1 for s in sizes if lo <= s <= hi) for lo, hi in _BUCKETS}
    return {"batches": len(sizes), "commands": sum(sizes), "mean": round(statistics.fmean(sizes), 1),
            "p50": pct(sizes, 50), "p90": pct(sizes, 90), "max": max(sizes), "histogram": hist}


async def closed_loop(callers: int, seconds: float, op: Callable[[random.Random], Awaitable[None]],
                      seed: int) -> Sample:
    """``callers`` tasks each running ``op`` back to back until ``seconds`` have passed."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def caller(i: int) -> None:
        nonlocal errors
        rng = random.Random(seed * 1_000 + i)
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                await op(rng)
            except LedgerError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    return Sample(len(latencies), time.perf_counter() - start, latencies, errors=errors)


def threaded_loop(callers: int, seconds: float, op: Callable[[int, int], None]) -> Sample:
    """``callers`` threads each calling ``op(thread, n)`` back to back until ``seconds`` pass."""
    per_thread: list[list[float]] = [[] for _ in range(callers)]
    barrier = threading.Barrier(callers + 1)
    deadline = [0.0]

    def worker(t: int) -> None:
        barrier.wait()
        out = per_thread[t]
        n = 0
        while time.perf_counter() < deadline[0]:
            t0 = time.perf_counter()
            op(t, n)
            out.append(time.perf_counter() - t0)
            n += 1

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(callers)]
    for th in threads:
        th.start()
    start = time.perf_counter()
    deadline[0] = start + seconds
    barrier.wait()
    for th in threads:
        th.join()
    latencies = [x for lst in per_thread for x in lst]
    return Sample(len(latencies), time.perf_counter() - start, latencies)


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu(pid: int) -> float | None:
    """utime + stime of a process, in seconds (None if it is gone or not on this machine)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    rest = raw[raw.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / _TICKS


def cpu_marks(server_pids: Sequence[int]) -> dict[str, Any]:
    """CPU seconds so far: this process, the machine (busy, everyone's), each given server pid."""
    marks: dict[str, Any] = {"client": time.process_time(), "wall": time.perf_counter()}
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        marks["machine"] = (sum(fields) - fields[3] - fields[4]) / _TICKS  # minus idle and iowait
    except (OSError, ValueError, IndexError):
        pass
    marks["pids"] = {pid: t for pid in server_pids if (t := _proc_cpu(pid)) is not None}
    return marks


def cpu_cores(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """Cores used between two marks; ``server`` counts the bench database's backends and the server's
    background processes (a backend that started in between counts from zero)."""
    wall = after["wall"] - before["wall"]
    if wall <= 0:
        return {}
    out: dict[str, float] = {k: round((after[k] - before[k]) / wall, 2) for k in ("client", "machine")
                             if k in before and k in after}
    if after["pids"]:
        used = sum(t - before["pids"].get(pid, 0.0) for pid, t in after["pids"].items())
        out["server"] = round(used / wall, 2)
        if "machine" in out:  # everyone else on the machine: the noise behind a figure
            out["other"] = round(max(0.0, out["machine"] - out["client"] - out["server"]), 2)
    return out


async def server_pids(pool: Any) -> list[int]:
    """Backends of the bench database plus the server's own processes (WAL writer, checkpointer, ...)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity"
                                " WHERE datname = current_database() OR backend_type <> 'client backend'")
    return [r["pid"] for r in rows]


async def measured(pool: Any, fn: Callable[[int], Awaitable[Sample]], seed: int) -> Sample:
    before = cpu_marks(await server_pids(pool))
    sample = await fn(seed)
    sample.cpu = cpu_cores(before, cpu_marks(await server_pids(pool)))
    return sample


# ---- database setup --------------------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


BASELINE_DDL = """
CREATE TABLE bench_accounts (
    account_id text PRIMARY KEY, balance_ucr bigint NOT NULL, version bigint NOT NULL);
CREATE TABLE bench_events (
    position bigserial, account_id text NOT NULL, version bigint NOT NULL, event_id uuid NOT NULL,
    type text NOT NULL, data jsonb NOT NULL, amount_ucr bigint NOT NULL, balance_after_ucr bigint NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (account_id, version));
CREATE TABLE bench_floor (
    position bigserial PRIMARY KEY, account_id text NOT NULL, event_id uuid NOT NULL, type text NOT NULL,
    data jsonb NOT NULL, idempotency_key text, amount_ucr bigint NOT NULL, occurred_at timestamptz NOT NULL,
    hash bytea NOT NULL);
"""


def git_commit() -> str | None:
    """The checked-out commit (with ``+dirty`` when ledger/ has local changes), if this is a git clone."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "ledger"], capture_output=True, text=True,
                               check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


async def server_facts(pool: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    async with pool.acquire() as conn:
        facts["server_version"] = await conn.fetchval("SHOW server_version")
        for name in ("fsync", "synchronous_commit", "wal_sync_method", "commit_delay", "shared_buffers",
                     "max_connections", "autovacuum"):
            facts[name] = await conn.fetchval(f"SHOW {name}")
    return facts


# ---- the systems under test ----------------------------------------------------------------------


@dataclass
class WriterSettings:
    window_ms: float
    concurrency: int
    max_batch: int
    parallel_at: int = Settings.model_fields["writer_parallel_at"].default

    @property
    def label(self) -> str:
        return (f"window={self.window_ms:g}ms concurrency={self.concurrency} max_batch={self.max_batch}"
                f" parallel_at={self.parallel_at}")


class Bench:
    """Everything one benchmark session holds: the ledger, the baseline pool, the peers."""

    def __init__(self, url: str, engine: AsyncEngine, card: RateCard, pool: Any, seconds: float,
                 settings: WriterSettings, peer_pool: int) -> None:
        self.url = url
        self.engine = engine
        self.card = card
        self.pool = pool
        self.seconds = seconds
        self.settings = settings
        self.peer_pool = peer_pool
        self.ledger = self.new_ledger(settings)
        self.event_json = "{}"  # a real UsageMetered ``data`` column, set by ``setup``
        self.stored_state = b"{}"  # a real serialised event, for the eventsourcing peer
        self.cost_ucr = 0  # what one charge costs
        self.dup_rate = DUP_RATE
        self.history: list[c.Meter] = []
        self.key_seq = 0
        self.es: dict[str, Any] = {}

    def new_ledger(self, s: WriterSettings) -> Ledger:
        return Ledger(self.engine, SystemClock(), self.card, window_s=s.window_ms / 1000,
                      max_batch=s.max_batch, concurrency=s.concurrency, parallel_at=s.parallel_at)

    async def setup(self) -> None:
        await self.ledger.start()
        every = [*SPREAD, HOT]
        for chunk in _chunks(every, 500):
            _check(await self.ledger.execute_many([c.OpenAccount(account_id=a, name=a) for a in chunk]))
            _check(await self.ledger.execute_many([
                c.GrantCredits(account_id=a, amount_ucr=FUNDING_UCR, source="purchase", reason="bench funding")
                for a in chunk]))
        outcome = await self.ledger.execute(c.Meter(account_id=SPREAD[0], operation=OPERATION, quantity=1))
        event = outcome.events[0]
        if len(outcome.events) != 1 or not isinstance(event, UsageMetered):
            raise RuntimeError(f"a Meter of one email appended {len(outcome.events)} events, not 1")
        self.stored_state = event.model_dump_json().encode()
        self.cost_ucr = event.cost_ucr
        async with self.engine.connect() as conn:
            self.event_json = (await conn.execute(text(
                "SELECT data::text FROM events WHERE type = 'UsageMetered' LIMIT 1"))).scalar_one()
        async with self.pool.acquire() as conn:
            await conn.execute(BASELINE_DDL)
            await conn.execute(
                "INSERT INTO bench_accounts SELECT a, $2, 0 FROM unnest($1::text[]) AS a", every, FUNDING_UCR)
        await asyncio.to_thread(self._setup_peers)

    def _setup_peers(self) -> None:
        from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder, PostgresDatastore

        u = make_url(self.url)
        socket_dir = u.query.get("host")
        host = u.host or (socket_dir if isinstance(socket_dir, str) else None) or "127.0.0.1"
        for name, cls in (("es_application", PostgresApplicationRecorder),
                          ("es_aggregate", PostgresAggregateRecorder)):
            datastore = PostgresDatastore(
                dbname=u.database or BENCH_DB, host=host, port=u.port or 5432,
                user=u.username or "postgres", password=u.password or "", pool_size=self.peer_pool,
                max_overflow=0, max_waiting=0)
            recorder = cls(datastore, events_table_name=f"{name}_events")
            recorder.create_table()
            self.es[name] = (datastore, recorder)

    async def close(self) -> None:
        await self.ledger.stop()
        for datastore, _ in self.es.values():
            await asyncio.to_thread(datastore.close)

    # ---- A: gated charges ------------------------------------------------------------------------

    async def charges_ledger(self, callers: int, hot: bool, seed: int) -> Sample:
        ledger = self.ledger

        async def op(rng: random.Random) -> None:
            acct = HOT if hot else SPREAD[rng.randrange(N_ACCOUNTS)]
            await ledger.execute(c.Charge(account_id=acct, operation=OPERATION, quantity=1))

        return await self._with_batches(closed_loop(callers, self.seconds, op, seed))

    async def charges_baseline(self, callers: int, hot: bool, seed: int) -> Sample:
        pool, data, cost = self.pool, self.event_json, self.cost_ucr

        async def op(rng: random.Random) -> None:
            acct = HOT if hot else SPREAD[rng.randrange(N_ACCOUNTS)]
            async with pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    "SELECT balance_ucr, version FROM bench_accounts WHERE account_id = $1 FOR UPDATE", acct)
                if row["balance_ucr"] < cost:
                    raise LedgerError("insufficient")
                balance, version = row["balance_ucr"] - cost, row["version"] + 1
                await conn.execute(
                    "INSERT INTO bench_events (account_id, version, event_id, type, data, amount_ucr,"
                    " balance_after_ucr) VALUES ($1, $2, $3, 'UsageMetered', $4::jsonb, $5, $6)",
                    acct, version, uuid.uuid4(), data, -cost, balance)
                await conn.execute(
                    "UPDATE bench_accounts SET balance_ucr = $2, version = $3 WHERE account_id = $1",
                    acct, balance, version)

        return await closed_loop(callers, self.seconds, op, seed)

    # ---- B: metered ingest -----------------------------------------------------------------------

    def _meter_batch(self, rng: random.Random, size: int, dup_rate: float) -> list[c.Meter]:
        batch: list[c.Meter] = []
        for _ in range(size):
            if self.history and rng.random() < dup_rate:
                batch.append(rng.choice(self.history))  # the same request again: a replay
                continue
            self.key_seq += 1
            batch.append(c.Meter(account_id=SPREAD[rng.randrange(N_ACCOUNTS)], operation=OPERATION, quantity=1,
                                 idempotency_key=f"usage-{self.key_seq}"))
        return batch

    async def metered_ledger(self, size: int, seed: int) -> Sample:
        rng = random.Random(seed)
        latencies: list[float] = []
        ops = errors = 0
        mark = len(self.ledger.writer.batch_sizes)
        start = time.perf_counter()
        deadline = start + self.seconds
        while time.perf_counter() < deadline:
            batch = self._meter_batch(rng, size, self.dup_rate)
            t0 = time.perf_counter()
            results = await self.ledger.execute_many(batch)
            latencies.append(time.perf_counter() - t0)
            errors += sum(1 for r in results if not isinstance(r, Outcome))
            ops += len(batch)
            self.history.extend(batch)
            if len(self.history) > HISTORY:
                del self.history[: len(self.history) - HISTORY]
        return Sample(ops, time.perf_counter() - start, latencies, self.ledger.writer.batch_sizes[mark:], errors)

    async def metered_floor(self, size: int, seed: int) -> Sample:
        rng = random.Random(seed)
        latencies: list[float] = []
        ops = 0
        data, digest = self.event_json, bytes(32)
        start = time.perf_counter()
        deadline = start + self.seconds
        async with self.pool.acquire() as conn:
            while time.perf_counter() < deadline:
                now = datetime.now(UTC)
                accts = [SPREAD[rng.randrange(N_ACCOUNTS)] for _ in range(size)]
                self.key_seq += size
                t0 = time.perf_counter()
                await conn.execute(
                    "INSERT INTO bench_floor (account_id, event_id, type, data, idempotency_key, amount_ucr,"
                    " occurred_at, hash) SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::jsonb[],"
                    " $5::text[], $6::bigint[], $7::timestamptz[], $8::bytea[])",
                    accts, [uuid.uuid4() for _ in range(size)], ["UsageMetered"] * size, [data] * size,
                    [f"usage-{self.key_seq - i}" for i in range(size)], [-1_000] * size, [now] * size,
                    [digest] * size)
                latencies.append(time.perf_counter() - t0)
                ops += size
        return Sample(ops, time.perf_counter() - start, latencies)

    # ---- C: single-event appends -----------------------------------------------------------------

    async def appends_ledger(self, callers: int, seed: int) -> Sample:
        ledger = self.ledger

        async def op(rng: random.Random) -> None:
            await ledger.execute(c.Meter(account_id=SPREAD[rng.randrange(N_ACCOUNTS)], operation=OPERATION,
                                         quantity=1))

        return await self._with_batches(closed_loop(callers, self.seconds, op, seed))

    async def appends_peer(self, name: str, callers: int, seed: int) -> Sample:
        from eventsourcing.persistence import StoredEvent

        _, recorder = self.es[name]
        state = self.stored_state
        # Each thread appends to its own aggregates, so versions never collide.
        owned = [[uuid.uuid4() for _ in range(max(1, N_ACCOUNTS // callers))] for _ in range(callers)]
        versions: list[dict[uuid.UUID, int]] = [dict.fromkeys(ids, 0) for ids in owned]

        def op(t: int, n: int) -> None:
            oid = owned[t][n % len(owned[t])]
            versions[t][oid] += 1
            recorder.insert_events([StoredEvent(originator_id=oid, originator_version=versions[t][oid],
                                                topic="bench.events:UsageMetered", state=state)])

        return await asyncio.to_thread(threaded_loop, callers, self.seconds, op)

    async def _with_batches(self, run: Awaitable[Sample]) -> Sample:
        mark = len(self.ledger.writer.batch_sizes)
        sample = await run
        sample.batch_sizes = self.ledger.writer.batch_sizes[mark:]
        return sample

    async def between_runs(self) -> None:
        """What a healthy server's autovacuum would have done by now (it may be off on a test box), then
        a checkpoint, so every run starts from the same kind of state. Not timed."""
        async with self.pool.acquire() as conn:
            await conn.execute("VACUUM ANALYZE")
            await conn.execute("CHECKPOINT")


def _chunks(items: Sequence[str], n: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _check(results: Sequence[object]) -> None:
    bad = [r for r in results if not isinstance(r, Outcome)]
    if bad:
        raise RuntimeError(f"setup command refused: {bad[0]!r}")


# ---- the schedule --------------------------------------------------------------------------------


PhaseFn = Callable[[int], Awaitable[Sample]]


def main_schedule(b: Bench) -> list[tuple[Phase, PhaseFn]]:
    """Every phase of one run, each ledger figure next to its reference."""
    out: list[tuple[Phase, PhaseFn]] = []
    for where, hot in (("spread", False), ("hot", True)):
        for n in CALLERS:
            out.append((Phase(f"A.ledger.{where}.{n}", "A", "ledger", "charges/s"),
                        partial(b.charges_ledger, n, hot)))
            out.append((Phase(f"A.baseline.{where}.{n}", "A", "asyncpg 1 tx/charge", "charges/s"),
                        partial(b.charges_baseline, n, hot)))
    for size in BATCHES:
        out.append((Phase(f"B.ledger.{size}", "B", "ledger", "events/s"), partial(b.metered_ledger, size)))
        out.append((Phase(f"B.floor.{size}", "B", "asyncpg unnest INSERT", "rows/s"),
                    partial(b.metered_floor, size)))
    out.append((Phase("C.ledger.64", "C", "ledger", "appends/s"), partial(b.appends_ledger, 64)))
    for name in ("es_application", "es_aggregate"):
        out.append((Phase(f"C.{name}.64", "C", f"eventsourcing {name[3:]} recorder", "appends/s"),
                    partial(b.appends_peer, name, 64)))
    return out


async def run_schedule(b: Bench, schedule: list[tuple[Phase, PhaseFn]], runs: int, progress: Progress,
                       title: str) -> None:
    task = progress.add_task(title, total=runs * len(schedule))
    for run in range(runs):
        await b.between_runs()
        # Pairs (ledger, reference) swap order on odd runs, so drift does not favour either side.
        pairs = [schedule[i:i + 2] for i in range(0, len(schedule), 2)]
        for pair in pairs:
            for phase, fn in (pair if run % 2 == 0 else pair[::-1]):
                progress.update(task, description=f"{title} run {run + 1}/{runs}: {phase.key}")
                phase.samples.append(await measured(b.pool, fn, run * 7919 + len(phase.samples)))
                progress.advance(task)


# ---- reporting -----------------------------------------------------------------------------------


def paired_ratio(num: Phase, den: Phase) -> float:
    """Median over runs of (ledger rate / reference rate) of the same run."""
    return statistics.median(a.rate / b.rate if b.rate else 0.0
                             for a, b in zip(num.samples, den.samples, strict=True))


def verdict(value: float, aim: float) -> str:
    return "[green]PASS[/green]" if value >= aim else "[red]MISS[/red]"


def report(phases: dict[str, Phase]) -> list[dict[str, Any]]:
    def fig(p: Phase) -> tuple[str, str, str, str]:
        cpu = p.cpu
        return (f"{p.rate:,.0f}", f"{p.p50_ms:.2f}", f"{p.p99_ms:.2f}",
                f"{cpu.get('client', 0):.2f}/{cpu.get('server', 0):.2f}" if cpu else "")

    aims = {(n, d): a for _, n, d, a in AIMS}

    t = Table(title="A. gated charges/s (median of runs; latency per command, ms)")
    for col in ("accounts", "callers", "ledger/s", "p50", "p99", "cpu py/pg", "1 tx/charge /s", "p50", "p99",
                "cpu py/pg", "ratio", "aim"):
        t.add_column(col, justify="right")
    for where in ("spread", "hot"):
        for n in CALLERS:
            led, base = phases[f"A.ledger.{where}.{n}"], phases[f"A.baseline.{where}.{n}"]
            r = paired_ratio(led, base)
            aim = aims.get((led.key, base.key))
            t.add_row("1,000" if where == "spread" else "1 hot", str(n), *fig(led), *fig(base), f"{r:.2f}x",
                      f">= {aim:g}x {verdict(r, aim)}" if aim else "")
    console.print(t)

    t = Table(title="B. metered events/s, 10% repeated keys (latency per batch, ms)")
    for col in ("batch", "ledger/s", "p50", "p99", "cpu py/pg", "floor rows/s", "p50", "p99", "cpu py/pg", "ratio",
                "aim"):
        t.add_column(col, justify="right")
    for size in BATCHES:
        led, base = phases[f"B.ledger.{size}"], phases[f"B.floor.{size}"]
        r = paired_ratio(led, base)
        aim = aims.get((led.key, base.key))
        t.add_row(f"{size:,}", *fig(led), *fig(base), f"{r:.2f}x", f">= {aim:g}x {verdict(r, aim)}" if aim else "")
    console.print(t)

    t = Table(title="C. single-event appends/s, 64 callers (latency per append, ms)")
    for col in ("system", "appends/s", "p50", "p99", "cpu py/pg", "ledger ratio", "aim"):
        t.add_column(col, justify="right")
    led = phases["C.ledger.64"]
    t.add_row("ledger (Meter, group commit)", *fig(led), "", "")
    for name in ("es_application", "es_aggregate"):
        p = phases[f"C.{name}.64"]
        r = paired_ratio(led, p)
        aim = aims.get((led.key, p.key))
        t.add_row(p.system, *fig(p), f"{r:.2f}x", f">= {aim:g}x {verdict(r, aim)}" if aim else "")
    console.print(t)

    t = Table(title="Writer batch sizes per phase (all runs)")
    for col in ("phase", "batches", "mean", "p50", "p90", "max", "histogram"):
        t.add_column(col, justify="right")
    for p in phases.values():
        if p.batch_sizes:
            s = batch_summary(p.batch_sizes)
            t.add_row(p.key, str(s["batches"]), str(s["mean"]), str(s["p50"]), str(s["p90"]), str(s["max"]),
                      " ".join(f"{k}:{v}" for k, v in s["histogram"].items() if v))
    console.print(t)

    others = [s.cpu["other"] for p in phases.values() for s in p.samples if "other" in s.cpu]
    if others:
        console.print(f"Other processes on the machine used a median {statistics.median(others):.2f} cores"
                      f" (max {max(others):.2f}) of {os.cpu_count()} during the phases.")
    verdicts = []
    for label, num, den, aim in AIMS:
        r = paired_ratio(phases[num], phases[den])
        verdicts.append({"aim": label, "ledger": num, "reference": den, "ratio": round(r, 3), "target": aim,
                         "pass": r >= aim})
        console.print(f"{verdict(r, aim)}  {label}: {r:.2f}x (aim >= {aim:g}x)")
    return verdicts


# ---- sweep and profile ---------------------------------------------------------------------------


SWEEP_WINDOWS_MS = (0.0, 0.5, 1.0, 2.0)
SWEEP_CONCURRENCY = (1, 2, 4)
#: Smaller batches let two loops overlap one batch's round trips with the next one's decisions.
SWEEP_EXTRA = ((0.0, 2, 32), (0.0, 4, 16), (1.0, 2, 32))


async def sweep(b: Bench, runs: int, progress: Progress, max_batch: int) -> list[dict[str, Any]]:
    """The tuning phases under each (window, concurrency) setting."""
    grid = [WriterSettings(w, k, max_batch) for k in SWEEP_CONCURRENCY for w in SWEEP_WINDOWS_MS]
    grid += [WriterSettings(w, k, m) for w, k, m in SWEEP_EXTRA]
    names = ("A.spread.1", "A.spread.64", "A.hot.64", "B.1000")
    task = progress.add_task("sweep", total=runs * len(grid) * len(names))
    figures: dict[str, dict[str, Phase]] = {s.label: {n: Phase(n, n[0], "ledger", "ops/s") for n in names}
                                            for s in grid}
    default = b.ledger
    try:
        for run in range(runs):
            await b.between_runs()
            order = grid if run % 2 == 0 else grid[::-1]
            for s in order:
                b.ledger = b.new_ledger(s)
                await b.ledger.start()
                try:
                    fns: dict[str, PhaseFn] = {
                        "A.spread.1": partial(b.charges_ledger, 1, False),
                        "A.spread.64": partial(b.charges_ledger, 64, False),
                        "A.hot.64": partial(b.charges_ledger, 64, True),
                        "B.1000": partial(b.metered_ledger, 1000),
                    }
                    for n in names:
                        progress.update(task, description=f"sweep run {run + 1}/{runs}: {s.label} {n}")
                        figures[s.label][n].samples.append(await measured(b.pool, fns[n], run * 31 + 1))
                        progress.advance(task)
                finally:
                    await b.ledger.stop()
    finally:
        b.ledger = default

    t = Table(title=f"Writer settings sweep (median of {runs} runs; ops/s and p99 ms)")
    t.add_column("setting")
    for n in names:
        t.add_column(f"{n}/s", justify="right")
        t.add_column("p99", justify="right")
    rows: list[dict[str, Any]] = []
    for s in grid:
        cells: list[str] = []
        row: dict[str, Any] = {"window_ms": s.window_ms, "concurrency": s.concurrency, "max_batch": s.max_batch,
                               "parallel_at": s.parallel_at}
        for n in names:
            p = figures[s.label][n]
            cells += [f"{p.rate:,.0f}", f"{p.p99_ms:.1f}"]
            row[n] = {"median_rate": round(p.rate, 1), "median_p50_ms": round(p.p50_ms, 3),
                      "median_p99_ms": round(p.p99_ms, 3), "runs": [x.to_json() for x in p.samples]}
        t.add_row(s.label, *cells)
        rows.append(row)
    console.print(t)
    return rows


async def profile(b: Bench, out: Path) -> None:
    """One 64-caller charge phase on 1,000 accounts under cProfile; top functions printed."""
    prof = cProfile.Profile()
    prof.enable()
    sample = await b.charges_ledger(64, False, 1)
    prof.disable()
    prof.dump_stats(str(out))
    console.print(f"profiled A.ledger.spread.64: {sample.rate:,.0f} charges/s under cProfile; stats in {out}")
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(30)
        console.print(buf.getvalue(), markup=False, highlight=False)


# ---- entry point ---------------------------------------------------------------------------------


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.write_path", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=None, help="runs per figure (median); default 5, 1 with --quick")
    p.add_argument("--quick", action="store_true", help="1 run of short phases: a smoke test")
    p.add_argument("--seconds", type=float, default=None, help="length of each phase (default 3, 0.5 quick)")
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_SERVER_URL),
                   help=f"any database on the server to use; {BENCH_DB} is dropped and recreated on it")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON output (default bench/results/write_path.json; _sweep/_only for those modes)")
    # The shipped defaults (Settings), so the figures describe what an operator gets.
    p.add_argument("--window-ms", type=float, default=_default("batch_window_ms"),
                   help="Ledger window_s, in ms (default: Settings.batch_window_ms, %(default)s)")
    p.add_argument("--concurrency", type=int, default=_default("writer_concurrency"),
                   help="Ledger writer concurrency (default: Settings.writer_concurrency, %(default)s)")
    p.add_argument("--max-batch", type=int, default=_default("batch_max"),
                   help="Ledger max_batch (default: Settings.batch_max, %(default)s)")
    p.add_argument("--pool-size", type=int, default=_default("pool_size"),
                   help="the ledger engine's pool size (default: Settings.pool_size, %(default)s)")
    p.add_argument("--baseline-pool", type=int, default=16,
                   help="connections of the asyncpg baseline pool and of each eventsourcing peer (default 16)")
    p.add_argument("--dup-rate", type=float, default=DUP_RATE,
                   help="share of metered commands repeating an earlier idempotency key (default 0.1)")
    p.add_argument("--only", default=None,
                   help="comma-separated phase-key prefixes to run (e.g. A.ledger.spread.64): no aims, for profiling")
    p.add_argument("--sweep", action="store_true", help="compare writer settings instead of the main phases")
    p.add_argument("--profile", type=Path, default=None, help="profile one phase with cProfile, write stats here")
    return p.parse_args(argv)


async def amain(args: argparse.Namespace) -> int:
    runs = args.runs if args.runs is not None else (1 if args.quick else 5)
    seconds = args.seconds if args.seconds is not None else (0.5 if args.quick else 3.0)
    settings = WriterSettings(args.window_ms, args.concurrency, args.max_batch)
    url = with_database(args.database_url, BENCH_DB)
    began = time.perf_counter()

    console.print(f"[bold]write path[/bold]: {runs} run(s) x {seconds:g}s phases, ledger {settings.label},"
                  f" pool {args.pool_size}, baseline pool {args.baseline_pool}")
    await recreate_database(args.database_url, BENCH_DB)
    await asyncio.to_thread(migrate, url)
    engine = make_engine(url, pool_size=args.pool_size)
    pool = await asyncpg.create_pool(libpq_url(url), min_size=args.baseline_pool, max_size=args.baseline_pool)
    try:
        card = await ensure_rate_card(engine)
        b = Bench(url, engine, card, pool, seconds, settings, args.baseline_pool)
        b.dup_rate = args.dup_rate
        await b.setup()
        # As the service does once it has started (``ledger.bootstrap.open_ledger``): what set-up
        # allocated is frozen out of the collector's generations, for the ledger and baselines alike.
        gc.freeze()
        try:
            if args.profile is not None:
                await profile(b, args.profile)
                return 0
            facts = await server_facts(pool)
            result: dict[str, Any] = {
                "benchmark": "write_path",
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "commit": await asyncio.to_thread(git_commit),
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                            "python": sys.version.split()[0], **facts},
                "config": {"runs": runs, "seconds_per_phase": seconds, "writer": vars(settings),
                           "pool_size": args.pool_size, "baseline_pool": args.baseline_pool,
                           "accounts": N_ACCOUNTS, "operation": OPERATION, "dup_rate": args.dup_rate},
            }
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=console, transient=True) as progress:
                schedule = main_schedule(b)
                if args.only:
                    prefixes = tuple(x.strip() for x in args.only.split(","))
                    schedule = [x for x in schedule if x[0].key.startswith(prefixes)]
                # Warm up every path (connections, prepared statements, caches): not recorded.
                b.seconds = min(0.5, seconds)
                warm = progress.add_task("warm-up", total=None)
                for _, fn in schedule:
                    await fn(0)
                progress.remove_task(warm)
                b.seconds = seconds
                if args.sweep:
                    result["sweep"] = await sweep(b, runs, progress, args.max_batch)
                else:
                    await run_schedule(b, schedule, runs, progress, "write path")
            if not args.sweep:
                phases = {p.key: p for p, _ in schedule}
                result["phases"] = {k: p.to_json() for k, p in phases.items()}
                if args.only:
                    for p in phases.values():
                        console.print(f"{p.key}: {p.rate:,.0f} {p.unit}  p50 {p.p50_ms:.2f} ms  p99 {p.p99_ms:.2f} ms"
                                      f"  cpu {p.cpu}" + (f"  batches {batch_summary(p.batch_sizes)}"
                                                          if p.batch_sizes else ""))
                else:
                    result["aims"] = report(phases)
            result["elapsed_s"] = round(time.perf_counter() - began, 1)
            suffix = "_sweep" if args.sweep else "_only" if args.only else ""
            out: Path = args.out or Path(f"bench/results/write_path{suffix}.json")
            out.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(out.write_text, json.dumps(result, indent=2) + "\n")
            console.print(f"wrote {out} ({result['elapsed_s']:.0f} s)")
        finally:
            await b.close()
    finally:
        await pool.close()
        await engine.dispose()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
