"""HTTP benchmark: gated charges and balance reads through ``credits serve`` on loopback, next to the
in-process ledger.

Run ``python -m bench.http [--runs 5] [--seconds 3] [--client-procs 1] [--serve-mode api-only|full]
[--workers 1,2] [--database-url URL] [--redis-url URL] [--out PATH] [--profile-server DIR]``.

It drops and recreates a scratch database (``credits_bench_http``), migrates it, opens 1,000
accounts on plan ``team``, grants each 5,000 credits (see ``FUNDING_UCR``), makes one operator key
(``create_operator_key``), and for each of ``--runs`` runs (``VACUUM ANALYZE`` and ``CHECKPOINT``
first, untimed; the order of the three blocks rotates every run) measures:

- in-process: ``bench.write_path``'s own 64-caller gated-charge phase over 1,000 accounts
  (``Bench.charges_ledger``: ``Charge("email", 1)``), and the same closed loop with the command
  the HTTP clients send (``Charge("gpt-4o-mini", {input_tokens, output_tokens}, attribution)``);
- for 1 and then 2 uvicorn workers (``--workers 1,2,4``: each count given), each block with its own server
  (``python -m ledger.cli serve --port P --workers N --log-level warning [--api-only]``, a
  subprocess started for the block, warmed up, and stopped with SIGTERM after it):
  ``POST /v1/accounts/{a}/charges`` from 64 keep-alive clients, closed loop (the peak);
  ``GET /v1/accounts/{a}/balance`` from 64 clients; and charges open-loop at half the peak just
  measured (requests fired on a fixed schedule, latency counted from the scheduled time).

The clients are a bare keep-alive HTTP/1.1 client (``RawClient``: pre-encoded requests,
``httptools`` for the answers, one connection per caller, like wrk) in ``--client-procs`` child
processes on uvloop, so the load generator takes little of the CPU the server needs. Every
figure is the median of the runs; CPU is measured per process group. Figures are printed with the
aims (in-process/HTTP <= 3x; p99 < 25 ms at half the peak) and written as JSON. Before each
block it waits (bounded) for the rest of the machine to go quiet.
``--profile-server DIR`` then samples each server with ``py-spy --gil`` during one charge phase,
one at half its peak, and one balance phase, and prints where its CPU goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]
import httptools
import httpx
import uvloop
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench.common import libpq_url, open_log, recreate_database, redis_pid, summarise_profile
from bench.write_path import (
    N_ACCOUNTS,
    SPREAD,
    Bench,
    Phase,
    Sample,
    WriterSettings,
    _check,
    _chunks,
    closed_loop,
    console,
    cpu_marks,
    git_commit,
    paired_ratio,
    server_facts,
    server_pids,
    with_database,
)
from ledger import commands as c
from ledger.db import make_engine, migrate
from ledger.errors import LedgerError
from ledger.events import Attribution
from ledger.keys import create_operator_key
from ledger.rate_cards import ensure_rate_card
from ledger.settings import Settings, load_settings

T = TypeVar("T")

HTTP_DB = "credits_bench_http"
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
PLAN = "team"  # 3,000 requests/min per account: ~1-6 per account per second here, never refused
OPERATION = "gpt-4o-mini"
#: Each account's grant: 5,000 credits (plus the plan's 2,000 signup credits), ~100,000 average
#: charges, so no charge is ever refused. Not 10⁹ like write_path: ``GET /balance`` forecasts the
#: run-out date as ``now + 7 days * available / spent in 7 days``, which overflows ``datetime`` (a 500)
#: once the ratio passes ~416,000 weeks. With at most 7,000 credits and every charge costing >= 21,000
#: µcr (>= 1,000 input and >= 100 output tokens), the ratio stays below 333,000 from an account's first
#: charge on. (50 credits before the sample card's prices went × 100 with 1 credit = $0.01: the same
#: number of charges.)
FUNDING_UCR = 5_000_000_000
MIN_INPUT_TOKENS, MIN_OUTPUT_TOKENS = 1_000, 100
CALLERS = 64
WORKERS: tuple[int, ...] = (1, 2)
BODIES = 1_024  # distinct charge bodies, drawn at random
START_DELAY_S = 0.5  # client processes connect, then start together this long after being asked
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 40.0
PHASE_GRACE_S = 30.0  # a client phase that has not ended this long after its clock fails

#: The aims: in-process charges/s over HTTP charges/s at most this; p99 at half the peak below this.
AIM_RATIO = 3.0
AIM_P99_MS = 25.0

# ---- what the clients send -----------------------------------------------------------------------


def charge_requests(seed: int, n: int = BODIES) -> list[dict[str, Any]]:
    """``n`` realistic charge bodies: a chat completion's tokens, attributed to an agent and a member."""
    rng = random.Random(seed)
    return [{"operation": OPERATION,
             "quantities": {"input_tokens": rng.randint(MIN_INPUT_TOKENS, 4_000),
                            "output_tokens": rng.randint(MIN_OUTPUT_TOKENS, 1_000)},
             "attribution": {"agent": f"agent-{rng.randrange(8)}", "member": f"user-{rng.randrange(50)}",
                             "flow": "chat"}}
            for _ in range(n)]


def charge_command(account: str, body: dict[str, Any]) -> c.Charge:
    """The command the API builds from ``body`` (what the in-process twin of the HTTP phase executes)."""
    return c.Charge(account_id=account, operation=body["operation"], quantities=body["quantities"],
                    attribution=Attribution(**body["attribution"]))


class Refused(LedgerError):
    """Anything but the expected status (or a transport error): an error for ``closed_loop``."""


# ---- the client processes ------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSpec:
    """One client process's share of one phase."""

    kind: str  # "charges" or "balance"
    base_url: str
    key: str
    callers: int  # connections (and, closed loop, concurrent callers)
    seconds: float
    seed: int
    start_at: float  # time.time() at which every client process starts its clock
    rate: float = 0.0  # > 0: open loop, this process's share of the requests/s


@dataclass
class HttpSample(Sample):
    """A ``Sample`` with what HTTP adds: status counts, and for open loop the offered rate."""

    statuses: dict[str, int] = field(default_factory=dict)
    offered_rate: float | None = None
    #: Open loop: how late the client fired its most-late request (client saturation shows here).
    max_send_lag_ms: float | None = None
    #: Full mode: events the relay had not yet read when the phase ended.
    relay_lag_events: int | None = None
    #: The server's group-commit batches during the phase (from /metrics; 1 worker only, where one
    #: scrape sees the only process) and their mean size.
    writer_batches: int | None = None
    writer_batch_mean: float | None = None
    #: PostgreSQL sessions opened during the phase (pool overflow churn shows here).
    pg_sessions_opened: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["statuses"] = self.statuses
        if self.offered_rate is not None:
            out["offered_rate"] = round(self.offered_rate, 1)
            out["max_send_lag_ms"] = self.max_send_lag_ms
        for name in ("relay_lag_events", "writer_batches", "writer_batch_mean", "pg_sessions_opened"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the load generator: pre-encoded request bytes out,
    ``httptools`` (llhttp, as uvicorn uses) for the answers, one request in flight at a time.

    Deliberately bare, like wrk: no pool, no header objects, no URL parsing, no per-request
    allocations beyond a future. httpx cost ~1 ms of CPU per request on the same 2 cores as the
    server it measured; this costs tens of µs.
    """

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.body = bytearray()
        self.closed = False

    # ---- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport has the interface but does not subclass asyncio.Transport.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"bad HTTP response: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionError("the server closed the connection"))

    # ---- httptools callbacks

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(self.parser.get_status_code())
        if not self.parser.should_keep_alive() and self.transport is not None:
            self.transport.close()

    # ----

    def _fail(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def send(self, *chunks: bytes) -> asyncio.Future[int]:
        """Write one request; the future resolves to the response's status once it is complete."""
        assert self.transport is not None and self.waiter is None
        self.body.clear()
        self.waiter = waiter = asyncio.get_running_loop().create_future()
        self.transport.writelines(chunks)
        return waiter


class RawClient:
    """``n`` keep-alive connections to ``host:port``; a request takes whichever is idle (waiting for
    one counts in its latency) and reconnects one the server closed."""

    def __init__(self, host: str, port: int, n: int) -> None:
        self.host, self.port, self.n = host, port, n
        self.idle: asyncio.Queue[Connection] = asyncio.Queue()

    async def connect(self) -> Connection:
        _, conn = await asyncio.get_running_loop().create_connection(Connection, self.host, self.port)
        return conn

    async def start(self, warm: bytes) -> None:
        """Open every connection and send ``warm`` on each, before any clock starts."""
        conns = await asyncio.gather(*(self.connect() for _ in range(self.n)))
        await asyncio.gather(*(conn.send(warm) for conn in conns))
        for conn in conns:
            self.idle.put_nowait(conn)

    async def request(self, *chunks: bytes) -> tuple[int, bytes]:
        try:
            conn = self.idle.get_nowait()
        except asyncio.QueueEmpty:
            conn = await self.idle.get()
        try:
            if conn.closed:
                conn = await self.connect()
            status = await conn.send(*chunks)
            return status, bytes(conn.body)
        except BaseException:
            # The connection's state is unknown (a half-read answer): drop it, open a new one later.
            if conn.transport is not None:
                conn.transport.close()
            conn.closed = True
            raise
        finally:
            self.idle.put_nowait(conn)

    def close(self) -> None:
        while not self.idle.empty():
            conn = self.idle.get_nowait()
            if conn.transport is not None:
                conn.transport.close()


def request_head(method: str, path: str) -> bytes:
    return f"{method} {path} HTTP/1.1\r\n".encode()


def request_tail(host: str, key: str, body: bytes | None) -> bytes:
    """Every header after the request line (and the body): the same bytes for every request of a kind."""
    head = f"host: {host}\r\nauthorization: Bearer {key}\r\n"
    if body is None:
        return (head + "\r\n").encode()
    return (head + f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body


def make_op(client: RawClient, kind: str, host: str, key: str, seed: int,
            statuses: Counter[int]) -> Callable[[random.Random], Awaitable[None]]:
    """One request of ``kind`` on a random account; raises ``Refused`` on any unexpected answer. Every
    request line and header block is encoded once, before the clock starts."""
    expect = 201 if kind == "charges" else 200
    if kind == "charges":
        heads = [request_head("POST", f"/v1/accounts/{a}/charges") for a in SPREAD]
        tails = [request_tail(host, key, json.dumps(b, separators=(",", ":")).encode())
                 for b in charge_requests(seed)]
    else:
        heads = [request_head("GET", f"/v1/accounts/{a}/balance") for a in SPREAD]
        tails = [request_tail(host, key, None)]
    n_tails = len(tails)

    async def op(rng: random.Random) -> None:
        head = heads[rng.randrange(N_ACCOUNTS)]
        tail = tails[rng.randrange(n_tails)]
        try:
            status, body = await client.request(head, tail)
        except (OSError, TimeoutError) as exc:
            statuses[0] += 1
            raise Refused(f"{type(exc).__name__}: {exc}") from None
        statuses[status] += 1
        if status != expect:
            raise Refused(f"{status}: {body[:200]!r}")

    return op


async def open_loop(rate: float, seconds: float, op: Callable[[random.Random], Awaitable[None]],
                    seed: int) -> tuple[Sample, float]:
    """Fire ``op`` ``rate`` times a second on a fixed schedule for ``seconds``, whatever the answers do.

    Latency runs from each request's *scheduled* time, so a client or server that falls behind
    shows as latency (no coordinated omission). Returns the sample and the worst send lag, in s.
    """
    rng = random.Random(seed)
    latencies: list[float] = []
    errors = 0
    lag = 0.0
    pending: set[asyncio.Task[None]] = set()

    async def one(scheduled: float) -> None:
        nonlocal errors
        try:
            await op(rng)
        except LedgerError:
            errors += 1
            return
        latencies.append(time.perf_counter() - scheduled)

    start = time.perf_counter()
    for i in range(max(1, round(rate * seconds))):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            lag = max(lag, -delay)
        task = asyncio.create_task(one(scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    return Sample(len(latencies), time.perf_counter() - start, latencies, errors=errors), lag


async def client_phase(spec: LoadSpec) -> dict[str, Any]:
    """One client process's share of a phase: ``spec.callers`` keep-alive connections (``RawClient``).

    A server that stops answering fails the phase after ``seconds + PHASE_GRACE_S`` rather than
    hanging the bench (there is no per-request timeout: arming one costs CPU on every request).
    """
    statuses: Counter[int] = Counter()
    split = urlsplit(spec.base_url)
    host, port = split.hostname or "127.0.0.1", split.port or 80
    client = RawClient(host, port, spec.callers)
    try:
        async with asyncio.timeout(START_DELAY_S + spec.seconds + PHASE_GRACE_S):
            # Open every keep-alive connection before the clock starts.
            await client.start(request_head("GET", "/healthz") + request_tail(split.netloc, spec.key, None))
            op = make_op(client, spec.kind, split.netloc, spec.key, spec.seed, statuses)
            late = time.time() - spec.start_at
            await asyncio.sleep(max(0.0, -late))
            cpu0 = time.process_time()
            lag: float | None = None
            if spec.rate > 0:
                sample, lag = await open_loop(spec.rate, spec.seconds, op, spec.seed)
            else:
                sample = await closed_loop(spec.callers, spec.seconds, op, spec.seed)
            cpu = time.process_time() - cpu0
    finally:
        client.close()
    return {"ops": sample.ops, "seconds": sample.seconds, "latencies": sample.latencies_s,
            "errors": sample.errors, "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "cpu_s": cpu, "lag_s": lag, "late_s": late}


def _run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop (installed with uvicorn[standard]): a cheaper client leaves more CPU to
    the server."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def client_main(spec: LoadSpec) -> dict[str, Any]:
    """Entry point of a client process for one phase."""
    return _run_loop(client_phase(spec))


def _noop() -> int:
    return os.getpid()


class Clients:
    """``procs`` long-lived client processes; each phase splits the callers (and the rate) between them."""

    def __init__(self, procs: int) -> None:
        self.procs = procs
        self.pool = ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("spawn"))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self.pool, _noop) for _ in range(self.procs)))

    async def run(self, kind: str, base_url: str, key: str, seconds: float, seed: int, rate: float = 0.0,
                  at_start: Callable[[], None] | None = None) -> tuple[HttpSample, float]:
        """The phase's merged sample and the client processes' CPU seconds; ``at_start`` is called when
        the clients start their clocks (after connecting), so CPU marks frame the phase itself."""
        loop = asyncio.get_running_loop()
        start_at = time.time() + START_DELAY_S
        shares = [CALLERS // self.procs + (1 if i < CALLERS % self.procs else 0) for i in range(self.procs)]
        specs = [LoadSpec(kind, base_url, key, n, seconds, seed * 100 + i, start_at, rate / self.procs)
                 for i, n in enumerate(shares)]
        running = asyncio.gather(*(loop.run_in_executor(self.pool, client_main, s) for s in specs))
        await asyncio.sleep(max(0.0, start_at - time.time()))
        if at_start is not None:
            at_start()
        results = await running
        late = max(r["late_s"] for r in results)
        if late > 0.05:
            console.print(f"[yellow]client processes started {late * 1000:.0f} ms late[/yellow]")
        statuses: Counter[str] = Counter()
        for r in results:
            statuses.update(r["statuses"])
        lags = [r["lag_s"] for r in results if r["lag_s"] is not None]
        sample = HttpSample(
            ops=sum(r["ops"] for r in results), seconds=max(r["seconds"] for r in results),
            latencies_s=[x for r in results for x in r["latencies"]], errors=sum(r["errors"] for r in results),
            statuses=dict(statuses), offered_rate=rate if rate > 0 else None,
            max_send_lag_ms=round(max(lags) * 1000, 2) if lags else None)
        return sample, sum(r["cpu_s"] for r in results)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


# ---- the API server under test ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (uvicorn's workers), from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        parents[int(entry)] = int(raw[raw.rindex(")") + 2:].split()[1])
    found, frontier = [pid], [pid]
    while frontier:
        kids = [p for p, pp in parents.items() if pp in frontier]
        found += kids
        frontier = kids
    return found


class Server:
    """``python -m ledger.cli serve --workers N`` as a subprocess on a loopback port."""

    def __init__(self, workers: int, env: dict[str, str], log: Path, extra: Sequence[str] = ()) -> None:
        self.workers = workers
        self.port = free_port()
        self.env = env
        self.log = log
        self.extra = list(extra)
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.port = free_port()
        out = await asyncio.to_thread(open_log, self.log)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ledger.cli", "serve", "--port", str(self.port), "--workers",
                str(self.workers), "--log-level", "warning", *self.extra, env=self.env,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        finally:
            out.close()
        deadline = time.perf_counter() + READY_TIMEOUT_S
        async with httpx.AsyncClient(base_url=self.base_url, trust_env=False, timeout=5.0) as client:
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"the {self.workers}-worker server exited ({self.proc.returncode});"
                                       f" see {self.log}")
                with contextlib.suppress(httpx.HTTPError):
                    # Every worker must be up (the parent plus its workers), not just the first to answer.
                    if (await client.get("/readyz")).status_code == 200 and (
                            self.workers == 1 or len(self.pids()) > self.workers):
                        return
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"the {self.workers}-worker server was not ready in {READY_TIMEOUT_S:.0f}s;"
                                       f" see {self.log}")
                await asyncio.sleep(0.2)

    def pids(self) -> list[int]:
        return descendants(self.proc.pid) if self.proc is not None and self.proc.returncode is None else []

    async def stop(self) -> int | None:
        """SIGTERM, then wait for the graceful shutdown (SIGKILL only if it hangs)."""
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                return await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()


# ---- the session ---------------------------------------------------------------------------------


#: Before each block, wait (up to ``--quiet-wait`` s) until the rest of the machine uses less than this.
QUIET_CORES = 0.25
#: Full mode: before measuring a server, wait until its relay is at most this many events behind.
RELAY_CAUGHT_UP = 500
RELAY_LAG_SQL = """
WITH c AS (SELECT tx_id, position FROM log_checkpoints WHERE name = 'relay')
SELECT CASE WHEN EXISTS (SELECT 1 FROM c)
            THEN (SELECT count(*) FROM events e, c WHERE (e.tx_id, e.position) > (c.tx_id, c.position))
            ELSE (SELECT count(*) FROM events) END
"""


def _nothing() -> None:
    pass


async def writer_batches(base_url: str) -> tuple[float, float] | None:
    """(batches, commands) the server's group-commit writer has committed, from its /metrics."""
    found: dict[str, float] = {}
    try:
        async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=5.0) as client:
            text = (await client.get("/metrics")).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("credits_commit_batch_commands_count", "credits_commit_batch_commands_sum"):
            found[name] = float(value)
    if len(found) < 2:
        return None
    return found["credits_commit_batch_commands_count"], found["credits_commit_batch_commands_sum"]


#: A phase: ``(seed, mark)`` -> (sample, client CPU seconds); ``mark()`` opens the CPU window.
PhaseFn = Callable[[int, Callable[[], None]], Awaitable[tuple[Sample, float]]]


class HttpBench:
    """The database, the in-process ledger (``bench.write_path.Bench``), the servers and the clients.

    A server runs only during its own block (started, warmed up, measured, stopped with SIGTERM),
    so an idle server never shares the machine with another block's figures.
    """

    def __init__(self, b: Bench, servers: dict[int, Server], clients: Clients, key: str, redis_pid: int | None,
                 seconds: float, *, full: bool, quiet_wait_s: float) -> None:
        self.b = b
        self.servers = servers
        self.clients = clients
        self.key = key
        self.redis_pid = redis_pid
        self.seconds = seconds
        self.full = full
        self.quiet_wait_s = quiet_wait_s
        self.requests = charge_requests(7)
        #: Per block: how long it waited for a quiet machine (and found), relay catch-up, exit codes.
        self.log: list[dict[str, Any]] = []

    async def measured(self, fn: PhaseFn, seed: int) -> Sample:
        """Run one phase; attach CPU in cores: the in-process ledger and this process (``py``), the client
        processes, the API server's processes, PostgreSQL (the bench database's backends and the server's
        own processes), Redis, and everyone else on the machine (``other``). The window opens when the
        phase calls ``mark`` (HTTP: once the clients have connected and start their clocks)."""
        groups = {"pg": await server_pids(self.b.pool),
                  "api": [p for s in self.servers.values() for p in s.pids()],
                  "redis": [self.redis_pid] if self.redis_pid else []}
        everyone = [p for pids in groups.values() for p in pids]
        sessions = await self.pg_sessions()
        marks: dict[str, Any] = {"before": cpu_marks(everyone)}

        def mark() -> None:
            marks["before"] = cpu_marks(everyone)

        sample, client_cpu_s = await fn(seed, mark)
        # Backends the servers opened during the phase (pool overflow) count from zero.
        groups["pg"] = sorted(set(groups["pg"]) | set(await server_pids(self.b.pool)))
        everyone = [p for pids in groups.values() for p in pids]
        before = marks["before"]
        after = cpu_marks(everyone)
        wall = after["wall"] - before["wall"]
        cpu = {"py": round((after["client"] - before["client"]) / wall, 2), "client": round(client_cpu_s / wall, 2)}
        for name, pids in groups.items():
            cpu[name] = round(sum(after["pids"][p] - before["pids"].get(p, 0.0) for p in pids
                                  if p in after["pids"]) / wall, 2)
        if "machine" in before and "machine" in after:
            machine = (after["machine"] - before["machine"]) / wall
            cpu["other"] = round(max(0.0, machine - sum(cpu.values())), 2)
        sample.cpu = cpu
        if isinstance(sample, HttpSample):
            sample.pg_sessions_opened = await self.pg_sessions() - sessions
            if self.full:
                sample.relay_lag_events = await self.relay_lag()
        return sample

    async def pg_sessions(self) -> int:
        async with self.b.pool.acquire() as conn:
            n: int = await conn.fetchval(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return n

    async def wait_quiet(self, label: str) -> None:
        """Other sessions' test runs share these 2 cores: wait for them to pause (bounded), and note it."""
        waited = 0.0
        busy = 0.0
        while True:
            before = cpu_marks([])
            await asyncio.sleep(1.0)
            after = cpu_marks([])
            wall = after["wall"] - before["wall"]
            busy = max(0.0, (after.get("machine", 0.0) - before.get("machine", 0.0))
                       - (after["client"] - before["client"])) / wall
            if busy < QUIET_CORES or waited >= self.quiet_wait_s:
                break
            waited += wall
        self.log.append({"block": label, "waited_for_quiet_s": round(waited, 1), "others_cores": round(busy, 2)})

    async def relay_lag(self) -> int:
        async with self.b.pool.acquire() as conn:
            lag: int = await conn.fetchval(RELAY_LAG_SQL)
        return lag

    @contextlib.asynccontextmanager
    async def serving(self, workers: int, warm: bool = True) -> AsyncIterator[Server]:
        """The ``workers``-worker server, started, warmed up (and in full mode caught up), then stopped."""
        server = self.servers[workers]
        note: dict[str, Any] = {"server": f"w{workers}"}
        await server.start()
        try:
            if warm:
                saved, self.seconds = self.seconds, min(0.5, self.seconds)
                try:
                    # Connections, prepared statements, the key and per-account plan caches: not recorded.
                    await self.http(workers, "charges", 0)
                    await self.http(workers, "balance", 0)
                finally:
                    self.seconds = saved
            if self.full:
                t0 = time.perf_counter()
                note["relay_lag_at_start"] = lag = await self.relay_lag()
                while lag > RELAY_CAUGHT_UP and time.perf_counter() - t0 < 120:
                    await asyncio.sleep(1.0)
                    lag = await self.relay_lag()
                note["relay_catch_up_s"] = round(time.perf_counter() - t0, 1)
                note["relay_lag_measured_from"] = lag
            yield server
        finally:
            note["exit_code"] = await server.stop()
            self.log.append(note)

    # ---- phases --------------------------------------------------------------------------------

    async def inproc_write_path(self, seed: int, mark: Callable[[], None] = _nothing) -> tuple[Sample, float]:
        """``bench.write_path``'s own A.ledger.spread.64 phase: ``Charge("email", 1)``, 64 callers."""
        return await self.b.charges_ledger(CALLERS, False, seed), 0.0

    async def inproc_same(self, seed: int, mark: Callable[[], None] = _nothing) -> tuple[Sample, float]:
        """The same closed loop as write_path's, executing the very commands the HTTP clients send."""
        ledger, reqs = self.b.ledger, self.requests

        async def op(rng: random.Random) -> None:
            await ledger.execute(charge_command(SPREAD[rng.randrange(N_ACCOUNTS)], reqs[rng.randrange(len(reqs))]))

        return await self.b._with_batches(closed_loop(CALLERS, self.seconds, op, seed)), 0.0

    async def http(self, workers: int, kind: str, seed: int, mark: Callable[[], None] = _nothing,
                   rate: float = 0.0) -> tuple[Sample, float]:
        url = self.servers[workers].base_url
        before = await writer_batches(url) if workers == 1 else None
        sample, client_cpu = await self.clients.run(kind, url, self.key, self.seconds, seed, rate, at_start=mark)
        after = await writer_batches(url) if workers == 1 else None
        if before is not None and after is not None and after[0] > before[0]:
            sample.writer_batches = int(after[0] - before[0])
            sample.writer_batch_mean = round((after[1] - before[1]) / (after[0] - before[0]), 1)
        return sample, client_cpu


def make_phases() -> dict[str, Phase]:
    ps = [Phase("inproc.write_path.64", "in-process", "in-process, Charge(email, 1) [write_path]", "charges/s"),
          Phase("inproc.charge.64", "in-process", f"in-process, Charge({OPERATION}, tokens)", "charges/s")]
    for w in WORKERS:
        ps += [Phase(f"http.w{w}.charges.64", "http", f"{w} worker(s), POST charges, 64 clients", "charges/s"),
               Phase(f"http.w{w}.balance.64", "http", f"{w} worker(s), GET balance, 64 clients", "reads/s"),
               Phase(f"http.w{w}.charges.half", "http", f"{w} worker(s), POST charges, open loop at peak/2",
                     "charges/s")]
    return {p.key: p for p in ps}


async def run_block(h: HttpBench, phases: dict[str, Phase], block: str, seed: int,
                    step: Callable[[str], None]) -> None:
    await h.wait_quiet(block)
    if block == "inproc":
        for key, fn in (("inproc.write_path.64", h.inproc_write_path), ("inproc.charge.64", h.inproc_same)):
            step(key)
            phases[key].samples.append(await h.measured(fn, seed))
        return
    w = int(block[1:])
    step(f"starting the {w}-worker server")
    async with h.serving(w):
        peak = phases[f"http.w{w}.charges.64"]
        step(peak.key)
        peak.samples.append(await h.measured(partial(h.http, w, "charges"), seed))
        key = f"http.w{w}.balance.64"
        step(key)
        phases[key].samples.append(await h.measured(partial(h.http, w, "balance"), seed))
        key = f"http.w{w}.charges.half"
        step(key)
        half = partial(h.http, w, "charges", rate=peak.samples[-1].rate / 2)
        phases[key].samples.append(await h.measured(half, seed))


BLOCKS = ("inproc", *(f"w{w}" for w in WORKERS))
PHASES_PER_RUN = 2 + 3 * len(WORKERS)


async def run_all(h: HttpBench, phases: dict[str, Phase], runs: int, progress: Progress) -> None:
    task = progress.add_task("http", total=runs * PHASES_PER_RUN)
    for run in range(runs):
        await h.b.between_runs()
        order = BLOCKS[run % len(BLOCKS):] + BLOCKS[:run % len(BLOCKS)]

        def step(key: str, run: int = run) -> None:
            progress.update(task, description=f"http run {run + 1}/{runs}: {key}")

        for block in order:
            await run_block(h, phases, block, run * 7919 + 1, step)
            progress.advance(task, 2 if block == "inproc" else 3)


# ---- server profile (py-spy) ---------------------------------------------------------------------


#: Where a sample's CPU goes, by the innermost frame that matches (first rule in this order wins).
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("writer batch: load, decide, write, commit (the in-process path)",
     ("GroupCommitWriter._loop", "GroupCommitWriter._commit")),
    ("rate limiter (one EVALSHA on redis-py)", ("RateLimiter.hit", "Runtime.rate_limit")),
    ("API key check (cached)", ("Runtime.principal",)),
    ("charge route: build Charge, enqueue, render", ("usage.py",)),
    ("balance route: 3 reads, 20 entries, render", ("routes/balance.py",)),
    ("request body read + JSON parse", ("request_body_to_args", "Request.json", "Request.body", "_get_body",
                                        "ledger/api/body.py")),
    ("response validate + serialize", ("serialize_response", "_prepare_response_content", "dump_json")),
    ("FastAPI dependency solving / parameter validation", ("solve_dependencies", "fastapi/dependencies/")),
    ("thread-pool hop (sync dependency)", ("run_sync_in_worker_thread", "WorkerThread", "run_in_threadpool",
                                            "Condition.notify")),
    ("metrics middleware (prometheus)", ("prometheus_client", "ledger/api/metrics.py")),
    ("uvicorn HTTP protocol (httptools)", ("httptools_impl.py",)),
    ("routing + middleware (starlette/fastapi)", ("fastapi/", "starlette/")),
)
OTHER = "event loop, asyncpg/redis I/O callbacks, GC, other"


def categorise(frames: Sequence[str]) -> str:
    for f in reversed(frames):
        for name, keys in CATEGORIES:
            if any(k in f for k in keys):
                return name
    return OTHER


async def profile_servers(h: HttpBench, out_dir: Path, seconds: float) -> dict[str, Any]:
    """Each server under ``py-spy record --gil`` (raw, 100 Hz, workers included) during one charge
    phase, one at half its peak and one balance phase: only samples holding the GIL, i.e. where
    Python spends CPU. The collapsed stacks land in ``out_dir``; inclusive and self shares are
    printed and returned."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    found: dict[str, Any] = {}
    for w in WORKERS:
        await h.wait_quiet(f"profile w{w}")
        async with h.serving(w) as server:
            peak_rate = 0.0
            for kind in ("charges", "half", "balance"):
                path = out_dir / f"server_w{w}_{kind}.txt"
                pid = server.proc.pid if server.proc is not None else 0
                proc = await asyncio.create_subprocess_exec(
                    spy, "record", "--pid", str(pid), "--subprocesses", "--gil", "--rate", "100", "--format", "raw",
                    "--duration", str(round(seconds + START_DELAY_S + 1)), "--output", str(path),
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
                await asyncio.sleep(0.5)  # py-spy attaches
                saved, h.seconds = h.seconds, seconds
                try:
                    # "half": charges open loop at half the peak just profiled, where the p99 aim is.
                    run = (partial(h.http, w, "charges", rate=peak_rate / 2) if kind == "half"
                           else partial(h.http, w, kind))
                    sample = await h.measured(run, 1)
                finally:
                    h.seconds = saved
                if kind == "charges":
                    peak_rate = sample.rate
                await proc.wait()
                summary = summarise_profile(await asyncio.to_thread(path.read_text), categorise=categorise)
                summary["rate_under_profiler"] = round(sample.rate, 1)
                summary["cpu_cores"] = sample.cpu
                found[f"w{w}.{kind}"] = summary
                t = Table(title=f"py-spy --gil: {w}-worker server, {kind}: where its Python CPU goes"
                          f" ({summary['samples']:,} samples; multiply by the unprofiled µs/req above)")
                t.add_column("share", justify="right")
                t.add_column("category")
                for name, pct_ in summary["categories_pct"]:
                    t.add_row(f"{pct_:.1f}%", name)
                console.print(t)
                t = Table(title=f"py-spy --gil: {w}-worker server, {kind} ({sample.rate:,.0f}/s under the profiler,"
                          f" {summary['samples']:,} samples) -> {path}")
                t.add_column("inclusive %", justify="right")
                t.add_column("function")
                t.add_column("self %", justify="right")
                t.add_column("function")
                for (fi, si), (fo, so) in zip(summary["inclusive_pct"], summary["self_pct"], strict=False):
                    t.add_row(f"{si:.1f}", fi, f"{so:.1f}", fo)
                console.print(t)
    return found


# ---- reporting -----------------------------------------------------------------------------------


def _cpu(p: Phase) -> str:
    cpu = p.cpu
    if not cpu:
        return ""
    service = cpu.get("py", 0) if p.group == "in-process" else cpu.get("api", 0)
    return f"{service:.2f}/{cpu.get('pg', 0):.2f}/{cpu.get('redis', 0):.2f}/{cpu.get('client', 0):.2f}"


def _median_of(p: Phase, name: str) -> float | None:
    values = [v for s in p.samples if (v := getattr(s, name, None)) is not None]
    return statistics.median(values) if values else None


def per_op_us(phases: dict[str, Phase]) -> dict[str, dict[str, float]]:
    """CPU per request in µs (median over runs of cores / rate): the service (``py`` in-process, the API
    processes over HTTP), PostgreSQL, Redis and the client. Unlike rates, this hardly depends on how
    much of the 2 cores the rest of the machine left free."""
    out: dict[str, dict[str, float]] = {}
    for key, p in phases.items():
        service = "py" if p.group == "in-process" else "api"
        row: dict[str, float] = {}
        for name, src in (("service", service), ("pg", "pg"), ("redis", "redis"), ("client", "client")):
            values = [s.cpu.get(src, 0.0) * 1e6 / s.rate for s in p.samples if s.rate > 0 and s.cpu]
            if values and (src != "client" or p.group != "in-process"):
                row[name] = round(statistics.median(values))
        out[key] = row
    return out


def report(phases: dict[str, Phase]) -> list[dict[str, Any]]:
    t = Table(title="HTTP vs in-process (median of runs; latency ms; CPU in cores and in µs per request;"
                    " service = the in-process ledger or the API processes)")
    for col in ("figure", "rate /s", "p50", "p99", "cores service/pg/redis/client", "µs/req service/pg",
                "batch", "errors"):
        t.add_column(col, justify="left" if col == "figure" else "right")
    per_op = per_op_us(phases)
    for p in phases.values():
        is_open = p.key.endswith(".half")
        offered = statistics.median(s.offered_rate or 0.0 for s in p.samples if isinstance(s, HttpSample)) \
            if is_open else 0.0
        rate = f"{p.rate:,.0f}" + (f" (offered {offered:,.0f})" if is_open else "")
        us = per_op[p.key]
        batch = _median_of(p, "writer_batch_mean")
        if p.batch_sizes:
            batch = statistics.fmean(p.batch_sizes)
        t.add_row(p.system, rate, f"{p.p50_ms:.2f}", f"{p.p99_ms:.2f}", _cpu(p),
                  f"{us.get('service', 0):,.0f}/{us.get('pg', 0):,.0f}", f"{batch:.1f}" if batch else "",
                  str(sum(s.errors for s in p.samples)))
    console.print(t)

    verdicts: list[dict[str, Any]] = []
    t = Table(title="Aims")
    for col in ("aim", "measured", "target", "verdict"):
        t.add_column(col, justify="left" if col == "aim" else "right")
    for w in WORKERS:
        http = phases[f"http.w{w}.charges.64"]
        for ref in ("inproc.write_path.64", "inproc.charge.64"):
            r = paired_ratio(phases[ref], http)
            label = (f"in-process/HTTP charges/s, {w} worker(s), vs "
                     + ("write_path's Charge(email, 1)" if ref.endswith("write_path.64") else "the same command"))
            ok = r <= AIM_RATIO
            verdicts.append({"aim": label, "in_process": ref, "http": http.key, "ratio": round(r, 3),
                             "target_max": AIM_RATIO, "pass": ok})
            t.add_row(label, f"{r:.2f}x", f"<= {AIM_RATIO:g}x", "[green]PASS[/green]" if ok else "[red]MISS[/red]")
        half = phases[f"http.w{w}.charges.half"]
        fast = half.p99_ms < AIM_P99_MS
        label = f"p99 of charges at half the peak, {w} worker(s)"
        verdicts.append({"aim": label, "phase": half.key, "p99_ms": round(half.p99_ms, 3),
                         "target_max_ms": AIM_P99_MS, "pass": fast})
        t.add_row(label, f"{half.p99_ms:.1f} ms", f"< {AIM_P99_MS:g} ms",
                  "[green]PASS[/green]" if fast else "[red]MISS[/red]")
        r2 = paired_ratio(phases[f"http.w{w}.balance.64"], http)
        verdicts.append({"note": f"balance reads per charge, {w} worker(s)", "ratio": round(r2, 3)})
    console.print(t)
    others = [s.cpu["other"] for p in phases.values() for s in p.samples if "other" in s.cpu]
    if others:
        console.print(f"Other processes on the machine used a median {statistics.median(others):.2f} cores"
                      f" (max {max(others):.2f}) of {os.cpu_count()} during the phases.")
    return verdicts


# ---- entry point ---------------------------------------------------------------------------------


def worker_counts(text: str) -> tuple[int, ...]:
    counts = tuple(int(n) for n in text.split(","))
    if not counts or any(not 1 <= n <= 64 for n in counts) or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError("distinct API process counts from 1 to 64, e.g. 1,2,4")
    return counts


def use_workers(counts: tuple[int, ...]) -> None:
    """The server blocks to run: the module's lists every phase and report reads."""
    global WORKERS, BLOCKS, PHASES_PER_RUN
    WORKERS = counts
    BLOCKS = ("inproc", *(f"w{w}" for w in WORKERS))
    PHASES_PER_RUN = 2 + 3 * len(WORKERS)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.http", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5,
                   help="runs per figure (median; default %(default)s; 0 with --profile-server: only the profile)")
    p.add_argument("--seconds", type=float, default=3.0, help="length of each phase (default %(default)s)")
    p.add_argument("--client-procs", type=int, default=1,
                   help="client processes sharing the 64 connections (default %(default)s)")
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_SERVER_URL),
                   help=f"any database on the server to use; {HTTP_DB} is dropped and recreated on it")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
                   help="the servers' REDIS_URL (rate limiter); default REDIS_URL or %(default)s")
    p.add_argument("--serve-mode", choices=("api-only", "full"), default="api-only",
                   help="api-only: `serve --api-only` (the HTTP API alone, the default here); full: plain `serve`,"
                        " which also runs the relay, a Dramatiq worker and the scheduler in every API process")
    p.add_argument("--workers", type=worker_counts, default=WORKERS, metavar="N,N",
                   help="API process counts, a server block each (default 1,2)")
    p.add_argument("--quiet-wait", type=float, default=60.0,
                   help="before each block, wait up to this many seconds for other processes to go quiet")
    p.add_argument("--out", type=Path, default=Path("bench/results/http.json"), help="JSON output (%(default)s)")
    p.add_argument("--profile-server", type=Path, default=None, metavar="DIR",
                   help="after the runs, sample each server with py-spy (one charge and one balance phase)")
    p.add_argument("--profile-seconds", type=float, default=10.0, help="length of each profiled phase")
    return p.parse_args(argv)


async def setup_accounts(b: Bench) -> None:
    """1,000 accounts on plan ``team``, each granted ``FUNDING_UCR`` (no charge is ever refused)."""
    await b.ledger.start()
    for chunk in _chunks(SPREAD, 500):
        _check(await b.ledger.execute_many([c.OpenAccount(account_id=a, name=a, plan=PLAN) for a in chunk]))
        _check(await b.ledger.execute_many([
            c.GrantCredits(account_id=a, amount_ucr=FUNDING_UCR, source="purchase", reason="bench funding")
            for a in chunk]))


def writer_settings(s: Settings) -> WriterSettings:
    """The writer exactly as ``open_ledger`` (and so each API worker) builds it from the same settings."""
    return WriterSettings(s.batch_window_ms, s.writer_concurrency, s.batch_max, s.writer_parallel_at)


async def amain(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    settings = load_settings()
    url = with_database(args.database_url, HTTP_DB)
    ws = writer_settings(settings)
    full = args.serve_mode == "full"
    console.print(f"[bold]http[/bold]: {args.runs} run(s) x {args.seconds:g}s phases, {CALLERS} clients in"
                  f" {args.client_procs} process(es), `serve{'' if full else ' --api-only'}` with"
                  f" {' and '.join(map(str, WORKERS))} worker(s), writer {ws.label}, pool {settings.pool_size}")
    await recreate_database(args.database_url, HTTP_DB)
    await asyncio.to_thread(migrate, url)
    engine = make_engine(url, pool_size=settings.pool_size)
    pool = await asyncpg.create_pool(libpq_url(url), min_size=1, max_size=2)
    servers: dict[int, Server] = {}
    clients = Clients(args.client_procs)
    try:
        card = await ensure_rate_card(engine)
        b = Bench(url, engine, card, pool, args.seconds, ws, peer_pool=0)
        try:
            await setup_accounts(b)
            key, _ = await create_operator_key(engine, "bench-http")
            # As open_ledger does in every API worker: the long-lived heap is not rescanned.
            gc.freeze()
            # Full mode: the Dramatiq queues get their own namespace on the shared Redis.
            env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": args.redis_url,
                   "CREDITS_BROKER_NAMESPACE": "credits-bench-http"}
            logs = args.out.parent
            servers = {w: Server(w, env, logs / f"http_server_w{w}.log", () if full else ("--api-only",))
                       for w in WORKERS}
            await clients.start()
            h = HttpBench(b, servers, clients, key.key, await redis_pid(args.redis_url), args.seconds, full=full,
                          quiet_wait_s=args.quiet_wait)
            facts = await server_facts(pool)
            result: dict[str, Any] = {
                "benchmark": "http",
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "commit": await asyncio.to_thread(git_commit),
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                            "python": sys.version.split()[0], **facts},
                "config": {"runs": args.runs, "seconds_per_phase": args.seconds, "clients": CALLERS,
                           "client_procs": args.client_procs, "workers": list(WORKERS), "writer": vars(ws),
                           "pool_size": settings.pool_size, "accounts": N_ACCOUNTS, "plan": PLAN,
                           "operation": OPERATION, "rate_limits": settings.rate_limits,
                           "key_cache_s": settings.key_cache_s, "serve_mode": args.serve_mode,
                           "funding_ucr": FUNDING_UCR},
            }
            phases = make_phases()
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=console, transient=True) as progress:
                warm = progress.add_task("warm-up (in-process)", total=None)
                saved, h.seconds = h.seconds, min(0.5, h.seconds)
                await h.inproc_write_path(0)
                await h.inproc_same(0)
                h.seconds = saved
                progress.remove_task(warm)
                await run_all(h, phases, args.runs, progress)
            if args.runs > 0:  # --runs 0: only the profile
                result["phases"] = {k: p.to_json() for k, p in phases.items()}
                result["aims"] = report(phases)
                result["cpu_per_request_us"] = per_op_us(phases)
            if args.profile_server is not None:
                result["server_profile"] = await profile_servers(h, args.profile_server, args.profile_seconds)
            result["blocks"] = h.log
            codes = {n["exit_code"] for n in h.log if "exit_code" in n}
            result["elapsed_s"] = round(time.perf_counter() - began, 1)
            await asyncio.to_thread(args.out.parent.mkdir, parents=True, exist_ok=True)
            await asyncio.to_thread(args.out.write_text, json.dumps(result, indent=2) + "\n")
            console.print(f"servers stopped with SIGTERM (exit codes {sorted(codes, key=str)}); wrote {args.out}"
                          f" ({result['elapsed_s']:.0f} s)")
        finally:
            await asyncio.gather(*(s.stop() for s in servers.values()), return_exceptions=True)
            await b.close()
    finally:
        await asyncio.to_thread(clients.close)
        await pool.close()
        await engine.dispose()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    use_workers(args.workers)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    raise SystemExit(main())
