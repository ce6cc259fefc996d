"""Workers benchmark: the hourly charging sweep through Dramatiq workers, and the relay's lag.

Run ``python -m bench.workers [--runs 5] [--relay-runs 5] [--only sweep|relay] [--quick]``.

It drops and recreates a scratch database (``credits_bench_workers``) on the server, migrates it,
loads the sample rate card and opens 1,000 funded accounts, then, each figure the median of the
runs:

1. **Hourly sweep.** 10,000 deployments (10 per account) are started by a ``Ledger`` whose
   ``ManualClock`` stands ``--hours`` hours and 5 minutes in the past, so each has ``--hours`` hours
   due. With 1 and with 2 ``credits worker --no-relay`` subprocesses consuming (started first,
   warmed up by one untimed sweep), ``Scheduler.tick`` runs with the real clock and sends the
   ``ChargeDeploymentHour`` commands (chunks of 200) to ``execute_commands``; the bench polls the
   ``deployments`` table until every due hour is charged. Reported: the tick's own time and the
   time from the tick's start until the last hour is charged.
2. **Relay lag.** A writer subprocess issues keyed ``Meter`` commands (one email each, a random
   account of 1,000) open loop at ``--rate`` per second for ``--seconds`` (after a warm-up at the
   same rate), while ``Relay.run`` follows in this process with the real Redis broker. The relay's
   ``send`` is wrapped: an event's lag is the time from the writer's acknowledgement of its commit
   to the relay handing its batch's messages to the broker (also from its ``recorded_at``, the
   moment the writer decided it, which includes the commit). The first ``--limited`` accounts
   have a per-run agent limit their metering crosses (80 % and 100 %) in every run, so the alert
   screen has crossings to pass through: reported are the check candidates, the checks sent, and
   (with ``--consumers``) the alerts raised against those expected.

Everything runs on loopback under a namespace of its own in Redis (removed afterwards). Figures
are printed and written as JSON (``bench/results/workers.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from redis.asyncio import Redis
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import workers.relay as relay_module
from bench.common import libpq_url, open_log, recreate_database, redis_pid, summarise_profile
from bench.write_path import (
    FUNDING_UCR,
    _check,
    _proc_cpu,
    console,
    git_commit,
    ms,
    pct,
    server_facts,
    with_database,
)
from ledger import commands as c
from ledger.bootstrap import open_ledger
from ledger.clock import ManualClock, SystemClock
from ledger.db import make_engine, migrate
from ledger.events import Attribution
from ledger.log import START, LogEntry, LogPosition, read_log, save_checkpoint
from ledger.rate_cards import ensure_rate_card
from ledger.rates import RateCard
from ledger.service import Ledger
from ledger.settings import Settings
from workers.actors import relay_sender
from workers.relay import AlertScreen, Plan, Relay
from workers.runner import Background

BENCH_DB = "credits_bench_workers"
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
ACCOUNTS = [f"wacct-{i:04d}" for i in range(1_000)]
INSTANCE = "cpu-s"  # 5 credits an hour on the sample card
OPERATION = "email"
#: What one email costs on the sample card (1 credit).
EMAIL_UCR = 1_000_000
#: Commands per ``execute_many`` while setting up (the writer never splits a group).
SETUP_CHUNK = 500
#: How often the sweep's completion is polled, s.
POLL_S = 0.05
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
#: Before each run, wait (up to ``--quiet-wait`` s) until the rest of the machine uses less than this.
QUIET_CORES = 0.25
#: Aims: a 10,000-deployment sweep in under 10 s; relay lag p99 under 1 s at 1,000 events/s.
SWEEP_AIM_S = 10.0
LAG_AIM_S = 1.0
#: The limited accounts' agent and its per-run limit: 8 one-email events reach 100 % (7 reach 80 %).
LIMITED_AGENT = "bench-agent"
RUN_LIMIT_UCR = 8 * EMAIL_UCR


# ---- CPU per process group -------------------------------------------------------------------------


def _machine_busy() -> float | None:
    """Busy CPU seconds of the whole machine so far (everything but idle and iowait)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields) - fields[3] - fields[4]) / (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


@dataclass
class CpuMark:
    wall: float
    machine: float | None
    groups: dict[str, dict[int, float]]


class CpuMeter:
    """CPU in cores per named group of processes (a pid that appears in between counts from zero)."""

    def __init__(self, pool: Any, redis_pid: int | None) -> None:
        self.pool = pool
        self.redis_pid = redis_pid
        self.groups: dict[str, Callable[[], list[int]]] = {}

    async def pg_pids(self) -> list[int]:
        """The bench database's backends plus the server's own processes (WAL writer, checkpointer, ...)."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT pid FROM pg_stat_activity"
                                    " WHERE datname = current_database() OR backend_type <> 'client backend'")
        return [r["pid"] for r in rows]

    async def mark(self) -> CpuMark:
        pids: dict[str, list[int]] = {"bench": [os.getpid()], "pg": await self.pg_pids(),
                                      "redis": [self.redis_pid] if self.redis_pid else []}
        pids.update({name: fn() for name, fn in self.groups.items()})
        groups = {name: {p: t for p in ps if (t := _proc_cpu(p)) is not None} for name, ps in pids.items()}
        return CpuMark(time.perf_counter(), _machine_busy(), groups)

    @staticmethod
    def cores(before: CpuMark, after: CpuMark) -> dict[str, float]:
        wall = after.wall - before.wall
        if wall <= 0:
            return {}
        out = {name: round(sum(t - before.groups.get(name, {}).get(p, 0.0) for p, t in pids.items()) / wall, 2)
               for name, pids in after.groups.items()}
        if before.machine is not None and after.machine is not None:
            busy = (after.machine - before.machine) / wall
            out["other"] = round(max(0.0, busy - sum(out.values())), 2)
        return out

    async def wait_quiet(self, limit_s: float) -> float:
        """Wait until the machine is quiet but for the groups measured (at most ``limit_s``); the load left."""
        deadline = time.perf_counter() + limit_s
        while True:
            before = await self.mark()
            await asyncio.sleep(1.0)
            other = self.cores(before, await self.mark()).get("other", 0.0)
            if other < QUIET_CORES or time.perf_counter() > deadline:
                return other


def _cpu_cell(cpu: dict[str, float], *names: str) -> str:
    return "/".join(f"{cpu.get(n, 0.0):.2f}" for n in names)


def _median_cpu(cpus: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = {k for cpu in cpus for k in cpu}
    return {k: round(statistics.median(cpu.get(k, 0.0) for cpu in cpus), 2) for k in sorted(keys)}


# ---- subprocesses ------------------------------------------------------------------------------------


class WorkerProcess:
    """``python -m ledger.cli worker --no-relay --threads N`` on the bench database and namespace."""

    def __init__(self, env: dict[str, str], threads: int, log: Path) -> None:
        self.env = env
        self.threads = threads
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    async def start(self) -> None:
        out = await asyncio.to_thread(open_log, self.log)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ledger.cli", "worker", "--no-relay", "--threads", str(self.threads),
                env=self.env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        finally:
            out.close()

    async def wait_ready(self) -> None:
        """Until the worker says it consumes (its ``Worker`` started); the ledger opens on the first message."""
        deadline = time.perf_counter() + READY_TIMEOUT_S
        while True:
            if self.proc is None or self.proc.returncode is not None:
                raise RuntimeError(f"a worker exited ({self.proc and self.proc.returncode}); see {self.log}")
            if "worker running" in await asyncio.to_thread(self.log.read_text, errors="replace"):
                return
            if time.perf_counter() > deadline:
                raise RuntimeError(f"a worker was not ready in {READY_TIMEOUT_S:.0f}s; see {self.log}")
            await asyncio.sleep(0.1)

    async def stop(self) -> int | None:
        """SIGTERM (the worker finishes the messages in hand), SIGKILL only if it hangs."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode


@contextlib.asynccontextmanager
async def worker_pool(n: int, env: dict[str, str], threads: int, log_dir: Path) -> AsyncIterator[list[WorkerProcess]]:
    procs = [WorkerProcess(env, threads, log_dir / f"worker_{n}w_{i}.log") for i in range(n)]
    try:
        for p in procs:
            await p.start()
        for p in procs:
            await p.wait_ready()
        yield procs
    finally:
        codes = [await p.stop() for p in procs]
        if any(code not in (0, None) for code in codes):
            console.print(f"[yellow]worker exit codes {codes}; see {log_dir}[/yellow]")


async def py_spy(pid: int, seconds: float, out: Path) -> asyncio.subprocess.Process | None:
    """``py-spy record --gil`` (raw collapsed stacks, 100 Hz) on ``pid``; None when py-spy is missing."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        console.print("[yellow]py-spy is not installed: no profile[/yellow]")
        return None
    await asyncio.to_thread(out.parent.mkdir, parents=True, exist_ok=True)
    return await asyncio.create_subprocess_exec(
        spy, "record", "--pid", str(pid), "--gil", "--rate", "100", "--format", "raw",
        "--duration", str(max(1, round(seconds))), "--output", str(out),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


def print_profile(title: str, summary: dict[str, Any]) -> None:
    t = Table(title=f"{title} ({summary['samples']:,} samples holding the GIL)")
    t.add_column("inclusive %", justify="right")
    t.add_column("function")
    t.add_column("self %", justify="right")
    t.add_column("function")
    for (fi, si), (fo, so) in zip(summary["inclusive_pct"], summary["self_pct"], strict=False):
        t.add_row(f"{si:.1f}", fi, f"{so:.1f}", fo)
    console.print(t)


# ---- the session -------------------------------------------------------------------------------------


@dataclass
class SweepRun:
    deployments: int
    hours_due: int
    tick_s: float
    total_s: float
    #: Charged hours seen at each poll: (seconds since the tick started, hours charged).
    timeline: list[tuple[float, int]]
    first_charge_s: float
    transactions: int
    paused: int
    cpu: dict[str, float]

    @property
    def after_tick_s(self) -> float:
        return self.total_s - self.tick_s

    @property
    def rate(self) -> float:
        return self.deployments * self.hours_due / self.total_s if self.total_s else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"deployments": self.deployments, "hours_due": self.hours_due, "tick_s": round(self.tick_s, 3),
                "total_s": round(self.total_s, 3), "after_tick_s": round(self.after_tick_s, 3),
                "first_charge_s": round(self.first_charge_s, 3), "hours_per_s": round(self.rate, 1),
                "transactions": self.transactions, "paused": self.paused, "cpu_cores": self.cpu,
                "timeline": [(round(t, 3), n) for t, n in self.timeline]}


@dataclass
class RelayBatch:
    events: int
    messages: int
    #: Alert check candidates (one per account and subject in the batch) before the screen.
    candidates: int
    checks: int
    read_s: float  # checkpoint + read_log + endpoints
    screen_s: float  # the alert screen's reads and decision
    plan_s: float  # from the read's end to the send's start (plan(), the screen, the thread hop)
    send_s: float  # the messages handed to the broker


@dataclass
class RelayRun:
    events: int
    relayed: int
    idle_s: float
    seconds: float
    lag_commit_s: list[float]
    lag_recorded_s: list[float]
    #: The part of the lag before the relay's read that found the event began (waiting: idle sleeps,
    #: the previous batch, transactions still in flight).
    wait_s: list[float]
    empty_reads: int
    #: Follow-up messages not yet acknowledged at the window's start and end (``--consumers``).
    backlog: tuple[int, int]
    #: Per-run limit alerts raised for this run, and how many crossings the run's metering made.
    alerts_raised: int
    alerts_expected: int
    consumers: int
    stall_s: float
    writer_rate: float
    writer_p50_s: float
    writer_p99_s: float
    writer_errors: int
    writer_behind_s: float
    batches: list[RelayBatch]
    cpu: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        sizes = [b.events for b in self.batches]
        return {"idle_s": self.idle_s, "events": self.events, "relayed": self.relayed,
                "empty_reads": self.empty_reads, "follow_up_backlog": self.backlog, "consumers": self.consumers,
                "alerts_raised": self.alerts_raised, "alerts_expected": self.alerts_expected,
                "alert_candidates": sum(b.candidates for b in self.batches),
                "alert_checks": sum(b.checks for b in self.batches),
                "stall_s": self.stall_s,
                "wait_ms": {"p50": ms(pct(self.wait_s, 50)), "p99": ms(pct(self.wait_s, 99))},
                "lag_commit_ms": {"p50": ms(pct(self.lag_commit_s, 50)), "p90": ms(pct(self.lag_commit_s, 90)),
                                  "p99": ms(pct(self.lag_commit_s, 99)), "max": ms(max(self.lag_commit_s, default=0))},
                "lag_recorded_ms": {"p50": ms(pct(self.lag_recorded_s, 50)), "p99": ms(pct(self.lag_recorded_s, 99)),
                                    "max": ms(max(self.lag_recorded_s, default=0))},
                "writer": {"rate": round(self.writer_rate, 1), "p50_ms": ms(self.writer_p50_s),
                           "p99_ms": ms(self.writer_p99_s), "errors": self.writer_errors,
                           "worst_behind_ms": ms(self.writer_behind_s)},
                "relay_batches": {"count": len(self.batches), "mean_events": round(statistics.fmean(sizes), 1)
                                  if sizes else 0, "p50_events": pct(sizes, 50), "max_events": max(sizes, default=0),
                                  "mean_messages": round(statistics.fmean(b.messages for b in self.batches), 1)
                                  if self.batches else 0,
                                  "read_ms_p50": ms(pct([b.read_s for b in self.batches], 50)),
                                  "screen_ms_p50": ms(pct([b.screen_s for b in self.batches], 50)),
                                  "plan_ms_p50": ms(pct([b.plan_s for b in self.batches], 50)),
                                  "send_ms_p50": ms(pct([b.send_s for b in self.batches], 50)),
                                  "send_ms_p99": ms(pct([b.send_s for b in self.batches], 99)),
                                  "busy_s": round(sum(b.read_s + b.plan_s + b.send_s for b in self.batches), 3)},
                "cpu_cores": self.cpu}


class RelayProbe:
    """Wraps the relay's log read, its alert screen and its ``send``: when each event's batch was
    handed to the broker, and how many alert checks the screen let through."""

    def __init__(self, send: Callable[[Plan], None], screen: AlertScreen) -> None:
        self.inner = send
        self.screen = screen
        self._screen_apply = screen.apply
        self._candidates = 0
        self._screen_s = 0.0
        self.recording = False
        #: event id -> (read started, handed over, recorded_at), epoch s
        self.handed: dict[str, tuple[float, float, float]] = {}
        self.batches: list[RelayBatch] = []
        #: Reads that found nothing (after which the relay sleeps ``idle_s``).
        self.empty_reads = 0
        self._entries: list[LogEntry] = []
        self._read_started = 0.0
        self._read_started_wall = 0.0
        self._read_done = 0.0

    async def read_log(self, conn: AsyncConnection, after: LogPosition = START, limit: int = 1000) -> list[LogEntry]:
        self._read_started_wall = time.time()
        self._read_started = time.perf_counter()
        entries = await read_log(conn, after, limit)
        self._entries = entries
        self._read_done = time.perf_counter()
        if not entries and self.recording:
            self.empty_reads += 1
        return entries

    async def apply(self, conn: AsyncConnection, p: Plan) -> dict[str, list[str]]:
        self._candidates = len(p.alerts)
        started = time.perf_counter()
        covered = await self._screen_apply(conn, p)
        self._screen_s = time.perf_counter() - started
        return covered

    def send(self, p: Plan) -> None:
        started = time.perf_counter()
        self.inner(p)
        handed = time.time()
        if self.recording:
            done = time.perf_counter()
            for en in self._entries:
                self.handed[str(en.event.event_id)] = (self._read_started_wall, handed,
                                                       en.event.recorded_at.timestamp())
            self.batches.append(RelayBatch(
                events=len(self._entries), messages=len(p.alerts) + len(p.debtors) + len(p.deliveries),
                candidates=self._candidates, checks=len(p.alerts), read_s=self._read_done - self._read_started,
                screen_s=self._screen_s, plan_s=started - self._read_done, send_s=done - started))

    @contextlib.contextmanager
    def installed(self) -> Iterator[RelayProbe]:
        # The relay calls ``read_log`` through its module's namespace: wrap it there, for this bench only.
        setattr(relay_module, "read_log", self.read_log)  # noqa: B010
        setattr(self.screen, "apply", self.apply)  # noqa: B010
        try:
            yield self
        finally:
            setattr(relay_module, "read_log", read_log)  # noqa: B010
            setattr(self.screen, "apply", self._screen_apply)  # noqa: B010


class WorkersBench:
    def __init__(self, args: argparse.Namespace, url: str, engine: AsyncEngine, card: RateCard, pool: Any,
                 meter: CpuMeter, progress: Progress) -> None:
        self.args = args
        self.url = url
        self.engine = engine
        self.card = card
        self.pool = pool
        self.meter = meter
        self.progress = progress
        self.namespace = f"bench-workers-{uuid.uuid4().hex[:8]}"
        self.settings = Settings(DATABASE_URL=url, REDIS_URL=args.redis_url, broker_namespace=self.namespace)
        self.ledger = self.new_ledger(SystemClock())
        self.seq = 0
        self.log_dir: Path = args.out.parent / "workers_logs"
        self.env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": args.redis_url,
                    "CREDITS_BROKER_NAMESPACE": self.namespace}
        self.others: list[float] = []

    def new_ledger(self, clock: ManualClock | SystemClock) -> Ledger:
        s = self.settings
        return Ledger(self.engine, clock, self.card, window_s=s.batch_window_ms / 1000, max_batch=s.batch_max,
                      concurrency=s.writer_concurrency, parallel_at=s.writer_parallel_at)

    async def setup(self) -> None:
        await self.ledger.start()
        for i in range(0, len(ACCOUNTS), SETUP_CHUNK):
            chunk = ACCOUNTS[i:i + SETUP_CHUNK]
            _check(await self.ledger.execute_many([c.OpenAccount(account_id=a, name=a) for a in chunk]))
            _check(await self.ledger.execute_many([
                c.GrantCredits(account_id=a, amount_ucr=FUNDING_UCR, source="purchase", reason="bench funding")
                for a in chunk]))
        _check(await self.ledger.execute_many([
            c.SetLimit(account_id=a, scope="agent", subject=LIMITED_AGENT, per_run_ucr=RUN_LIMIT_UCR)
            for a in ACCOUNTS[:self.args.limited]]))

    async def close(self) -> None:
        await self.ledger.stop()
        r = Redis.from_url(self.args.redis_url)
        try:
            keys = [k async for k in r.scan_iter(match=f"{self.namespace}:*", count=1000)]
            if keys:
                await r.delete(*keys)
        finally:
            await r.aclose()

    async def between_runs(self) -> float:
        """VACUUM ANALYZE and CHECKPOINT (autovacuum is off on this box), then wait for a quiet machine."""
        async with self.pool.acquire() as conn:
            await conn.execute("VACUUM ANALYZE")
            await conn.execute("CHECKPOINT")
        return await self.meter.wait_quiet(self.args.quiet_wait)

    # ---- 1. the hourly sweep ----

    async def start_deployments(self, n: int, hours: int) -> tuple[str, list[str]]:
        """``n`` deployments started ``hours`` h 5 min ago, spread over the accounts; their id prefix."""
        self.seq += 1
        prefix = f"s{self.seq:03d}-"
        ids = [f"{prefix}{i:05d}" for i in range(n)]
        past = self.new_ledger(ManualClock(datetime.now(UTC) - timedelta(hours=hours, minutes=5)))
        await past.start()
        try:
            starts = [c.StartDeployment(account_id=ACCOUNTS[i % len(ACCOUNTS)], deployment_id=d, instance_type=INSTANCE)
                      for i, d in enumerate(ids)]
            for i in range(0, n, SETUP_CHUNK):
                _check(await past.execute_many(starts[i:i + SETUP_CHUNK]))
        finally:
            await past.stop()
        return prefix, ids

    async def stop_deployments(self, ids: list[str]) -> None:
        stops = [c.StopDeployment(account_id=ACCOUNTS[i % len(ACCOUNTS)], deployment_id=d) for i, d in enumerate(ids)]
        for i in range(0, len(stops), SETUP_CHUNK):
            await self.ledger.execute_many(stops[i:i + SETUP_CHUNK])  # a paused one may refuse: it is stopped anyway

    async def charged(self, prefix: str) -> tuple[int, int]:
        """Hours charged so far by the sweep (beyond the start's hour 0), and deployments paused."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(text(
                "SELECT coalesce(sum(hours_charged - 1), 0) AS h, count(*) FILTER (WHERE status = 'paused') AS p"
                " FROM deployments WHERE deployment_id LIKE :p AND status <> 'stopped'"),
                {"p": prefix + "%"})).one()
        return int(row.h), int(row.p)

    async def sweep_once(self, bg: Background, workers: list[WorkerProcess]) -> SweepRun:
        n, hours = self.args.deployments, self.args.hours
        prefix, ids = await self.start_deployments(n, hours)
        try:
            self.others.append(await self.between_runs())
            due = n * hours
            self.meter.groups["workers"] = lambda: [p for w in workers if (p := w.pid) is not None]
            before = await self.meter.mark()
            sched = bg.scheduler(self.ledger, SystemClock())
            wall0, start = time.time(), time.perf_counter()
            tick = await sched.tick()
            tick_s = time.perf_counter() - start
            if tick.hours != due:
                raise RuntimeError(f"the tick sent {tick.hours} hourly charges, {due} were due")
            timeline: list[tuple[float, int]] = []
            deadline = start + self.args.sweep_timeout
            while True:
                done, paused = await self.charged(prefix)
                now = time.perf_counter() - start
                timeline.append((now, done))
                if done >= due:
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"only {done} of {due} hours charged after {self.args.sweep_timeout:.0f}s")
                await asyncio.sleep(POLL_S)
            total_s = time.perf_counter() - start
            cpu = self.meter.cores(before, await self.meter.mark())
            async with self.engine.connect() as conn:
                row = (await conn.execute(text(
                    "SELECT count(DISTINCT tx_id::text) AS tx, min(recorded_at) AS first FROM events"
                    " WHERE type = 'UsageMetered' AND data->>'deployment_id' LIKE :p"
                    " AND (data->>'hour_index')::int >= 1"), {"p": prefix + "%"})).one()
            first = row.first.timestamp() - wall0 if row.first else 0.0
            return SweepRun(n, hours, tick_s, total_s, timeline, first, int(row.tx), paused, cpu)
        finally:
            self.meter.groups.pop("workers", None)
            await self.stop_deployments(ids)

    async def sweep(self, n_workers: int, runs: int, task: Any, profile: Path | None) -> dict[str, Any]:
        bg = Background(self.settings)
        try:
            async with worker_pool(n_workers, self.env, self.args.threads, self.log_dir) as procs:
                self.progress.update(task, description=f"sweep, {n_workers} worker(s): warm-up (cold start)")
                cold = await self.sweep_once(bg, procs)
                self.progress.advance(task)
                samples: list[SweepRun] = []
                for r in range(runs):
                    self.progress.update(task, description=f"sweep, {n_workers} worker(s): run {r + 1}/{runs}")
                    samples.append(await self.sweep_once(bg, procs))
                    self.progress.advance(task)
                prof: dict[str, Any] = {}
                if profile is not None:
                    expected = statistics.median(x.total_s for x in samples) + 6.0
                    prof = await self.profile_sweep(bg, procs, profile, n_workers, expected)
        finally:
            await asyncio.to_thread(bg.close)
        return {"workers": n_workers, "threads": self.args.threads, "cold": cold.to_json(),
                "median_tick_s": round(statistics.median(s.tick_s for s in samples), 3),
                "median_total_s": round(statistics.median(s.total_s for s in samples), 3),
                "median_after_tick_s": round(statistics.median(s.after_tick_s for s in samples), 3),
                "median_first_charge_s": round(statistics.median(s.first_charge_s for s in samples), 3),
                "median_hours_per_s": round(statistics.median(s.rate for s in samples), 1),
                "median_transactions": statistics.median(s.transactions for s in samples),
                "median_cpu_cores": _median_cpu([s.cpu for s in samples]),
                "runs": [s.to_json() for s in samples], "profile": prof}

    async def profile_sweep(self, bg: Background, procs: list[WorkerProcess], out_dir: Path,
                            n_workers: int, expected: float) -> dict[str, Any]:
        """One more sweep with every worker (and this process, for the tick) under py-spy for ``expected`` s."""
        spies: list[tuple[str, Path, asyncio.subprocess.Process]] = []
        targets = [(f"sweep_{n_workers}w_worker{i}", p.pid) for i, p in enumerate(procs) if p.pid is not None]
        # The tick is in this process: profile it too (the deployments are started before it attaches).
        n, hours = self.args.deployments, self.args.hours
        prefix, ids = await self.start_deployments(n, hours)
        try:
            await self.between_runs()
            for name, pid in [*targets, (f"sweep_{n_workers}w_bench", os.getpid())]:
                path = out_dir / f"{name}.txt"
                spy = await py_spy(pid, expected, path)
                if spy is not None:
                    spies.append((name, path, spy))
            await asyncio.sleep(1.0)  # py-spy attaches
            sched = bg.scheduler(self.ledger, SystemClock())
            start = time.perf_counter()
            await sched.tick()
            while True:
                if (await self.charged(prefix))[0] >= n * hours:
                    break
                await asyncio.sleep(POLL_S)
            console.print(f"profiled sweep ({n_workers} worker(s)): {time.perf_counter() - start:.2f} s under py-spy")
        finally:
            for _, _, spy in spies:
                await spy.wait()
            await self.stop_deployments(ids)
        found: dict[str, Any] = {}
        for name, path, _ in spies:
            if path.exists():
                found[name] = summarise_profile(await asyncio.to_thread(path.read_text), top=25)
                print_profile(f"py-spy --gil: {name} -> {path}", found[name])
        return found

    # ---- 2. relay lag ----

    async def fast_forward_relay(self) -> None:
        """Move the relay's checkpoint to the end of the log: the backlog of the set-up is not measured."""
        async with self.engine.begin() as conn:
            row = (await conn.execute(text(
                "SELECT tx_id::text::bigint AS tx, position FROM events ORDER BY tx_id DESC, position DESC LIMIT 1"
            ))).first()
            if row is not None:
                await save_checkpoint(conn, relay_module.CHECKPOINT, LogPosition(row.tx, row.position))

    async def relay_once(self, run: int, idle_s: float, profile: Path | None = None) -> RelayRun:
        await self.fast_forward_relay()
        self.others.append(await self.between_runs())
        bg = Background(self.settings)
        # The shipped screen, as ``Background.relay`` builds it (this bench's ledger has the real clock).
        screen = AlertScreen(self.ledger.clock, lambda: self.ledger.card)
        probe = RelayProbe(relay_sender(bg.actors), screen)
        stop = asyncio.Event()
        spec = {"url": self.url, "rate": self.args.rate, "seconds": self.args.seconds,
                "warmup": self.args.warmup, "seed": run, "prefix": f"r{run:03d}-{uuid.uuid4().hex[:6]}",
                "limited": self.args.limited}
        spec_path = self.log_dir / f"writer_{run}.json"
        out_path = self.log_dir / f"writer_{run}_out.json"
        await asyncio.to_thread(spec_path.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(spec_path.write_text, json.dumps(spec))
        spy: asyncio.subprocess.Process | None = None
        consumer_spies: list[asyncio.subprocess.Process] = []
        stall: asyncio.Task[None] | None = None
        backlog = [0, 0]
        consumers = contextlib.AsyncExitStack()
        try:
            procs: list[WorkerProcess] = []
            if self.args.consumers:
                procs = await consumers.enter_async_context(
                    worker_pool(self.args.consumers, self.env, self.args.threads, self.log_dir))
            self.meter.groups["consumers"] = lambda: [p for w in procs if (p := w.pid) is not None]
            with probe.installed():
                relay = Relay(self.engine, probe.send, screen=screen)
                task = asyncio.create_task(relay.run(stop, idle_s=idle_s), name="relay")
                writer = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.workers", "--writer-spec", str(spec_path), "--writer-out",
                    str(out_path), env=self.env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    start_new_session=True)
                assert writer.stdout is not None and writer.stdin is not None
                self.meter.groups["writer"] = lambda: [writer.pid] if writer.returncode is None else []
                # The writer says when its warm-up ends and its measured window begins.
                before: CpuMark | None = None
                after: CpuMark | None = None
                while line := await writer.stdout.readline():
                    if line.startswith(b"measuring"):
                        probe.recording = True
                        before = await self.meter.mark()
                        backlog[0] = await self.follow_ups()
                        if profile is not None:
                            spy = await py_spy(os.getpid(), self.args.seconds, profile)
                            for i, proc in enumerate(procs):
                                if proc.pid is not None and (
                                        x := await py_spy(proc.pid, self.args.seconds,
                                                          profile.with_name(f"relay_consumer{i}.txt"))) is not None:
                                    consumer_spies.append(x)
                        if self.args.stall:
                            stall = asyncio.create_task(self.hold_xid(self.args.seconds / 2 - self.args.stall / 2,
                                                                      self.args.stall))
                    elif line.startswith(b"stopped"):
                        after = await self.meter.mark()
                        backlog[1] = await self.follow_ups()
                        writer.stdin.write(b"bye\n")
                        await writer.stdin.drain()
                    elif line.startswith(b"done"):
                        break
                code = await writer.wait()
                if code != 0 or before is None or after is None:
                    raise RuntimeError(f"the writer exited with {code}")
                result = json.loads(await asyncio.to_thread(out_path.read_text))
                wanted = {e[0] for e in result["events"]}
                # The last events: wait until the relay has handed them over too.
                deadline = time.perf_counter() + 60
                while True:
                    if wanted <= probe.handed.keys() or time.perf_counter() > deadline:
                        break
                    await asyncio.sleep(0.05)
                stop.set()
                await task
                if self.args.consumers:
                    await self.alerts_drained()
                alerts = await self.run_alerts(spec["prefix"])
        finally:
            self.meter.groups.pop("writer", None)
            stop.set()
            for x in [*([spy] if spy is not None else []), *consumer_spies]:
                await x.wait()
            if stall is not None:
                await stall
            await consumers.aclose()
            self.meter.groups.pop("consumers", None)
            await asyncio.to_thread(bg.close)
            await self.purge_queues()
        lag_commit: list[float] = []
        lag_recorded: list[float] = []
        wait: list[float] = []
        for event_id, _scheduled, acked in result["events"]:
            seen = probe.handed.get(event_id)
            if seen is not None:
                read_at, handed, recorded_at = seen
                lag_commit.append(handed - acked)
                lag_recorded.append(handed - recorded_at)
                wait.append(max(0.0, read_at - acked))
        w = result["writer"]
        # Each limited account whose run reached 8 events crossed 80 % and 100 % of its run limit.
        per_account = Counter(result["limited_events"])
        expected = sum((n * EMAIL_UCR * 100 >= 80 * RUN_LIMIT_UCR) + (n * EMAIL_UCR >= RUN_LIMIT_UCR)
                       for n in per_account.values())
        return RelayRun(len(result["events"]), len(lag_commit), idle_s, self.args.seconds, lag_commit, lag_recorded,
                        wait, probe.empty_reads, (backlog[0], backlog[1]), alerts, expected, self.args.consumers,
                        self.args.stall,
                        w["rate"], w["p50_s"], w["p99_s"], w["errors"], w["behind_s"], probe.batches,
                        self.meter.cores(before, after))

    async def alerts_drained(self) -> None:
        """Wait (up to 60 s) until the consumers have run every alert check, and the relay's last batch."""
        for _ in range(600):
            if not await self.follow_ups():
                return
            await asyncio.sleep(0.1)

    async def run_alerts(self, prefix: str) -> int:
        """Per-run limit alerts raised for the run ``prefix`` (none unless a consumer ran the checks)."""
        async with self.engine.connect() as conn:
            return int((await conn.execute(text(
                "SELECT count(*) FROM events WHERE type = 'AlertRaised' AND data->>'period' = :p"),
                {"p": f"R{prefix}"})).scalar() or 0)

    async def follow_ups(self) -> int:
        """Alert checks enqueued by the relay and not yet acknowledged by a worker."""
        r = Redis.from_url(self.args.redis_url)
        try:
            return int(await r.hlen(f"{self.namespace}:alerts.msgs"))
        finally:
            await r.aclose()

    async def hold_xid(self, after_s: float, hold_s: float) -> None:
        """A write transaction in *another* database (``--database-url``'s) held open for ``hold_s``."""
        await asyncio.sleep(max(0.0, after_s))
        conn = await asyncpg.connect(libpq_url(self.args.database_url))
        try:
            async with conn.transaction():
                await conn.fetchval("SELECT pg_current_xact_id()")  # takes a transaction id, as any write does
                await asyncio.sleep(hold_s)
        finally:
            await conn.close()

    async def purge_queues(self) -> None:
        """Drop the follow-up messages the relay enqueued (no worker consumes them in this phase)."""
        r = Redis.from_url(self.args.redis_url)
        try:
            keys = [k async for k in r.scan_iter(match=f"{self.namespace}:*", count=1000)]
            if keys:
                await r.delete(*keys)
        finally:
            await r.aclose()


# ---- the writer subprocess ---------------------------------------------------------------------------


async def writer_main(spec_path: Path, out_path: Path) -> int:
    """Open loop: keyed ``Meter`` commands at ``rate``/s; per measured event (id, scheduled, acked) in epoch s."""
    spec = json.loads(await asyncio.to_thread(spec_path.read_text))
    rate: float = spec["rate"]
    rng = random.Random(spec["seed"])
    settings = Settings()
    events: list[tuple[str, float, float]] = []
    limited_events: list[str] = []
    latencies: list[float] = []
    limited = set(ACCOUNTS[:spec["limited"]])
    # The limited accounts' usage names the agent and this run: it crosses their run limit.
    run_attribution = Attribution(agent=LIMITED_AGENT, run=spec["prefix"])
    errors = 0
    behind = 0.0
    seq = 0
    async with open_ledger(settings, url=spec["url"], run_migrations=False) as ledger:

        async def one(scheduled: float, record: bool) -> None:
            nonlocal errors, seq
            seq += 1
            account = rng.choice(ACCOUNTS)
            cmd = c.Meter(account_id=account, operation=OPERATION, quantity=1,
                          idempotency_key=f"{spec['prefix']}-{seq}",
                          attribution=run_attribution if account in limited else Attribution())
            try:
                outcome = await ledger.execute(cmd)
            except Exception:
                errors += record
                return
            if account in limited:
                limited_events.append(account)
            acked = time.time()
            if record:
                latencies.append(acked - scheduled)
                events.extend((str(e.event_id), scheduled, acked) for e in outcome.events)

        async def phase(seconds: float, record: bool) -> float:
            nonlocal behind
            pending: set[asyncio.Task[None]] = set()
            start = time.time()
            for i in range(max(1, round(rate * seconds))):
                scheduled = start + i / rate
                delay = scheduled - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif record:
                    behind = max(behind, -delay)
                t = asyncio.create_task(one(scheduled, record))
                pending.add(t)
                t.add_done_callback(pending.discard)
            await asyncio.gather(*pending)
            return time.time() - start

        await phase(spec["warmup"], False)
        print("measuring", flush=True)
        elapsed = await phase(spec["seconds"], True)
        # The parent reads the CPU figures while this process's database connections still exist.
        print("stopped", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
    out = {"events": events, "limited_events": limited_events,
           "writer": {"rate": len(latencies) / elapsed, "p50_s": pct(latencies, 50),
                                        "p99_s": pct(latencies, 99), "errors": errors, "behind_s": behind}}
    await asyncio.to_thread(out_path.write_text, json.dumps(out))
    print("done", flush=True)
    return 0


# ---- reporting ---------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "[green]PASS[/green]" if ok else "[red]MISS[/red]"


def report_sweep(results: list[dict[str, Any]], deployments: int, hours: int) -> list[dict[str, Any]]:
    t = Table(title=f"1. hourly sweep: {deployments:,} deployments x {hours} hour(s) due (median of runs, s)")
    for col in ("workers", "tick", "tick start -> all charged", "after the tick", "first charge", "hours/s",
                "tx", "cpu workers/pg/redis/bench/other", "cold run (total)", "aim < 10 s"):
        t.add_column(col, justify="right")
    aims = []
    for r in results:
        ok = r["median_total_s"] < SWEEP_AIM_S
        t.add_row(str(r["workers"]), f"{r['median_tick_s']:.2f}", f"{r['median_total_s']:.2f}",
                  f"{r['median_after_tick_s']:.2f}", f"{r['median_first_charge_s']:.2f}",
                  f"{r['median_hours_per_s']:,.0f}", f"{r['median_transactions']:g}",
                  _cpu_cell(r["median_cpu_cores"], "workers", "pg", "redis", "bench", "other"),
                  f"{r['cold']['total_s']:.2f}", verdict(ok))
        aims.append({"aim": f"{deployments:,}-deployment sweep, {r['workers']} worker(s)",
                     "measured_s": r["median_total_s"], "target_s": SWEEP_AIM_S, "pass": ok})
    console.print(t)
    return aims


def relay_summary(runs: list[RelayRun]) -> dict[str, Any]:
    def med(fn: Callable[[RelayRun], float]) -> float:
        return statistics.median(fn(r) for r in runs)

    def per_s(fn: Callable[[RelayRun], float]) -> float:
        return med(lambda r: fn(r) / r.seconds)

    return {
        "idle_s": runs[0].idle_s,
        "lag_commit_p50_ms": ms(med(lambda r: pct(r.lag_commit_s, 50))),
        "lag_commit_p90_ms": ms(med(lambda r: pct(r.lag_commit_s, 90))),
        "lag_commit_p99_ms": ms(med(lambda r: pct(r.lag_commit_s, 99))),
        "lag_commit_max_ms": ms(med(lambda r: max(r.lag_commit_s, default=0.0))),
        "lag_recorded_p50_ms": ms(med(lambda r: pct(r.lag_recorded_s, 50))),
        "lag_recorded_p99_ms": ms(med(lambda r: pct(r.lag_recorded_s, 99))),
        "wait_p50_ms": ms(med(lambda r: pct(r.wait_s, 50))),
        "wait_p99_ms": ms(med(lambda r: pct(r.wait_s, 99))),
        "writer_rate": round(med(lambda r: r.writer_rate), 1),
        "writer_p50_ms": ms(med(lambda r: r.writer_p50_s)),
        "writer_p99_ms": ms(med(lambda r: r.writer_p99_s)),
        "batches_per_s": round(per_s(lambda r: len(r.batches)), 1),
        "empty_reads_per_s": round(per_s(lambda r: r.empty_reads), 1),
        "messages_per_s": round(per_s(lambda r: sum(b.messages for b in r.batches)), 1),
        "batch_mean_events": round(med(lambda r: statistics.fmean(b.events for b in r.batches)
                                       if r.batches else 0.0), 1),
        "read_ms_p50": ms(med(lambda r: pct([b.read_s for b in r.batches], 50))),
        "screen_ms_p50": ms(med(lambda r: pct([b.screen_s for b in r.batches], 50))),
        "alert_candidates_per_s": round(per_s(lambda r: sum(b.candidates for b in r.batches)), 1),
        "alert_checks_per_s": round(per_s(lambda r: sum(b.checks for b in r.batches)), 1),
        "alert_checks_per_run": med(lambda r: sum(b.checks for b in r.batches)),
        "alerts_raised": med(lambda r: r.alerts_raised),
        "alerts_expected": med(lambda r: r.alerts_expected),
        "alerts_short": sum(max(0, r.alerts_expected - r.alerts_raised) for r in runs) if runs[0].consumers else 0,
        "plan_ms_p50": ms(med(lambda r: pct([b.plan_s for b in r.batches], 50))),
        "send_ms_p50": ms(med(lambda r: pct([b.send_s for b in r.batches], 50))),
        "send_ms_p99": ms(med(lambda r: pct([b.send_s for b in r.batches], 99))),
        "follow_up_backlog_end": med(lambda r: r.backlog[1]),
        "follow_ups_consumed_per_s": round(per_s(lambda r: r.backlog[0] + sum(b.messages for b in r.batches)
                                                 - r.backlog[1]), 1),
        "stall_s": runs[0].stall_s,
        "consumers": runs[0].consumers,
        "missing": sum(r.events - r.relayed for r in runs),
        "median_cpu_cores": _median_cpu([r.cpu for r in runs]),
    }


def report_relay(summaries: list[dict[str, Any]], rate: float, runs: int) -> list[dict[str, Any]]:
    stall = summaries[0]["stall_s"] if summaries else 0.0
    t = Table(title=f"2. relay lag at {rate:,.0f} events/s: commit (writer's ack) -> batch handed to the broker"
              f" (median of {runs} runs; ms)" + (f"; a {stall:g} s transaction held in another database" if stall
                                                 else ""))
    for col in ("idle_s", "writer /s", "w. p99", "lag p50", "p90", "p99", "max", "wait p50/p99",
                "from recorded_at p50/p99", "aim p99 < 1 s"):
        t.add_column(col, justify="right")
    aims = []
    for s in summaries:
        ok = s["lag_commit_p99_ms"] < LAG_AIM_S * 1000
        t.add_row(f"{s['idle_s']:g}", f"{s['writer_rate']:,.0f}", f"{s['writer_p99_ms']:.0f}",
                  f"{s['lag_commit_p50_ms']:.0f}", f"{s['lag_commit_p90_ms']:.0f}", f"{s['lag_commit_p99_ms']:.0f}",
                  f"{s['lag_commit_max_ms']:.0f}", f"{s['wait_p50_ms']:.0f}/{s['wait_p99_ms']:.0f}",
                  f"{s['lag_recorded_p50_ms']:.0f}/{s['lag_recorded_p99_ms']:.0f}", verdict(ok))
        aims.append({"aim": f"relay lag p99 at {rate:,.0f} events/s, idle_s={s['idle_s']:g}",
                     "measured_ms": s["lag_commit_p99_ms"], "target_ms": LAG_AIM_S * 1000, "pass": ok})
        if s["alerts_short"]:
            console.print(f"[red]{s['alerts_short']} expected run-limit alerts were not raised[/red]")
        if s["missing"]:
            console.print(f"[red]{s['missing']} measured events were never relayed (idle_s={s['idle_s']:g})[/red]")
    console.print(t)
    t = Table(title="2. the relay's batches (per second of load; ms per batch)")
    for col in ("idle_s", "batches/s", "empty reads/s", "events/batch", "check candidates/s", "checks sent/s",
                "messages/s", "read p50", "screen p50", "plan p50", "send p50/p99", "consumed/s, backlog",
                "alerts raised/expected", "cores relay/writer/consumers/pg/redis/other"):
        t.add_column(col, justify="right")
    for s in summaries:
        t.add_row(f"{s['idle_s']:g}", f"{s['batches_per_s']:.1f}", f"{s['empty_reads_per_s']:.1f}",
                  f"{s['batch_mean_events']:.1f}", f"{s['alert_candidates_per_s']:,.0f}",
                  f"{s['alert_checks_per_s']:,.1f}", f"{s['messages_per_s']:,.0f}", f"{s['read_ms_p50']:.1f}",
                  f"{s['screen_ms_p50']:.1f}", f"{s['plan_ms_p50']:.1f}",
                  f"{s['send_ms_p50']:.1f}/{s['send_ms_p99']:.1f}",
                  (f"{s['follow_ups_consumed_per_s']:,.0f}, {s['follow_up_backlog_end']:,.0f}" if s["consumers"]
                   else f"no consumer, {s['follow_up_backlog_end']:,.0f}"),
                  f"{s['alerts_raised']:g}/{s['alerts_expected']:g}" if s["consumers"] else "-",
                  _cpu_cell(s["median_cpu_cores"], "bench", "writer", "consumers", "pg", "redis", "other"))
    console.print(t)
    return aims


# ---- entry point -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=None, help="sweep runs per worker count (median; default 5, 1 quick)")
    p.add_argument("--relay-runs", type=int, default=None, help="relay runs (median; default 5, 1 quick)")
    p.add_argument("--quick", action="store_true", help="1 run of each, 2,000 deployments, 3 s of relay load")
    p.add_argument("--only", choices=("sweep", "relay"), default=None, help="one part only")
    p.add_argument("--deployments", type=int, default=None, help="running deployments (default 10,000)")
    p.add_argument("--hours", type=int, default=1, help="hours due per deployment (default 1: the hourly sweep)")
    p.add_argument("--workers", default="1,2", help="worker process counts to compare (default 1,2)")
    p.add_argument("--threads", type=int, default=Settings.model_fields["worker_threads"].default,
                   help="actor threads per worker (default: Settings.worker_threads, %(default)s)")
    p.add_argument("--sweep-timeout", type=float, default=300.0, help="give up on a sweep after this many s")
    p.add_argument("--rate", type=float, default=1000.0, help="relay load: metered events per second (1,000)")
    p.add_argument("--seconds", type=float, default=None, help="relay load: measured seconds (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="relay load: seconds at the same rate first (2)")
    p.add_argument("--consumers", type=int, default=0,
                   help="relay: worker processes consuming the follow-ups meanwhile (default 0: none)")
    p.add_argument("--limited", type=int, default=100,
                   help="relay: accounts with a per-run agent limit that their metering crosses in every run (100)")
    p.add_argument("--stall", type=float, default=0.0,
                   help="relay: hold a transaction id open this long in another database mid-window (default 0)")
    p.add_argument("--relay-idle", default=str(Settings.model_fields["relay_idle_s"].default),
                   help="the relay's idle_s values to compare, comma-separated (default: Settings.relay_idle_s,"
                        " %(default)s)")
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_SERVER_URL),
                   help="any database on the server to use; --db-name is dropped and recreated on it")
    p.add_argument("--db-name", default=BENCH_DB, help="the scratch database (default %(default)s)")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
                   help="Redis for the broker (a namespace of its own, removed afterwards)")
    p.add_argument("--quiet-wait", type=float, default=60.0, help="wait up to this long for a quiet machine (60)")
    p.add_argument("--out", type=Path, default=Path("bench/results/workers.json"), help="JSON output")
    p.add_argument("--profile", type=Path, default=None,
                   help="directory: one extra sweep per worker count and one relay run under py-spy")
    p.add_argument("--writer-spec", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--writer-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.runs = args.runs if args.runs is not None else (1 if args.quick else 5)
    args.relay_runs = args.relay_runs if args.relay_runs is not None else (1 if args.quick else 5)
    args.deployments = args.deployments if args.deployments is not None else (2_000 if args.quick else 10_000)
    args.seconds = args.seconds if args.seconds is not None else (3.0 if args.quick else 10.0)
    return args


async def amain(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    url = with_database(args.database_url, args.db_name)
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    console.print(f"[bold]workers[/bold]: sweep of {args.deployments:,} deployments x {args.hours} h with {counts}"
                  f" worker(s) ({args.threads} threads), {args.runs} run(s); relay at {args.rate:,.0f} events/s for"
                  f" {args.seconds:g} s, {args.relay_runs} run(s)")
    await recreate_database(args.database_url, args.db_name)
    await asyncio.to_thread(migrate, url)
    engine = make_engine(url)
    pool = await asyncpg.create_pool(libpq_url(url), min_size=1, max_size=2)
    meter = CpuMeter(pool, await redis_pid(args.redis_url))
    result: dict[str, Any] = {
        "benchmark": "workers", "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": await asyncio.to_thread(git_commit),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                    **await server_facts(pool)},
        "config": {"deployments": args.deployments, "accounts": len(ACCOUNTS), "hours_due": args.hours,
                   "workers": counts, "threads": args.threads, "sweep_runs": args.runs, "rate": args.rate,
                   "seconds": args.seconds, "warmup_s": args.warmup, "relay_runs": args.relay_runs,
                   "limited_accounts": args.limited, "run_limit_ucr": RUN_LIMIT_UCR,
                   "instance_type": INSTANCE, "operation": OPERATION},
        "aims": [],
    }
    try:
        card = await ensure_rate_card(engine)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            b = WorkersBench(args, url, engine, card, pool, meter, progress)
            result["config"]["writer"] = {"window_ms": b.settings.batch_window_ms, "max_batch": b.settings.batch_max,
                                          "concurrency": b.settings.writer_concurrency,
                                          "relay_idle_s": b.settings.relay_idle_s}
            setup = progress.add_task("set-up: 1,000 funded accounts", total=None)
            await b.setup()
            progress.remove_task(setup)
            try:
                if args.only in (None, "relay"):
                    idles = [float(x) for x in args.relay_idle.split(",") if x.strip()]
                    task = progress.add_task("relay", total=args.relay_runs * len(idles))
                    by_idle: dict[float, list[RelayRun]] = {i: [] for i in idles}
                    for r in range(args.relay_runs):
                        for idle in (idles if r % 2 == 0 else idles[::-1]):
                            progress.update(task, description=f"relay run {r + 1}/{args.relay_runs}, idle_s={idle:g}")
                            by_idle[idle].append(await b.relay_once(r, idle))
                            progress.advance(task)
                    summaries = [relay_summary(runs) for runs in by_idle.values()]
                    result["aims"] += report_relay(summaries, args.rate, args.relay_runs)
                    result["relay"] = [{**s, "runs": [x.to_json() for x in by_idle[s["idle_s"]]]} for s in summaries]
                    if args.profile is not None:
                        path = args.profile / "relay_bench.txt"
                        run = await b.relay_once(args.relay_runs, idles[0], path)
                        if path.exists():
                            prof = summarise_profile(await asyncio.to_thread(path.read_text), top=25)
                            prof["lag_commit_p99_ms"] = ms(pct(run.lag_commit_s, 99))
                            print_profile(f"py-spy --gil: the relay's process -> {path}", prof)
                            result["relay_profile"] = prof
                        for i in range(args.consumers):
                            cpath = path.with_name(f"relay_consumer{i}.txt")
                            if cpath.exists():
                                prof = summarise_profile(await asyncio.to_thread(cpath.read_text), top=25)
                                print_profile(f"py-spy --gil: follow-up consumer {i} -> {cpath}", prof)
                                result[f"relay_consumer{i}_profile"] = prof
                if args.only in (None, "sweep"):
                    task = progress.add_task("sweep", total=sum(args.runs + 1 for _ in counts))
                    sweeps = []
                    for n in counts:
                        sweeps.append(await b.sweep(n, args.runs, task, args.profile))
                    result["aims"] += report_sweep(sweeps, args.deployments, args.hours)
                    result["sweep"] = sweeps
            finally:
                await b.close()
        if b.others:
            console.print(f"Other processes used a median {statistics.median(b.others):.2f} cores (max"
                          f" {max(b.others):.2f}) just before the runs.")
        for a in result["aims"]:
            shown = f"{a['measured_s']:.2f} s" if "measured_s" in a else f"{a['measured_ms']:.0f} ms"
            console.print(f"{verdict(a['pass'])}  {a['aim']}: {shown}")
        result["elapsed_s"] = round(time.perf_counter() - began, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(args.out.write_text, json.dumps(result, indent=2) + "\n")
        console.print(f"wrote {args.out} ({result['elapsed_s']:.0f} s)")
    finally:
        await pool.close()
        await engine.dispose()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.writer_spec is not None:
        return asyncio.run(writer_main(args.writer_spec, args.writer_out))
    return asyncio.run(amain(args))


if __name__ == "__main__":
    raise SystemExit(main())
