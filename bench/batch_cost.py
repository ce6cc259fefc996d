"""What one batch of charges to a hot account costs the store's own code, counted without I/O.

Run ``python -m bench.batch_cost [--charges 1,16,64] [--database-url URL] [--out PATH]``.

It drops and recreates a scratch database (``credits_batch_cost``), migrates it, loads the sample
rate card and opens one hot account, funded as ``bench.write_path`` funds it and charged until its
free grants are spent (one live grant, as in that bench after its warm-up). It then runs one batch
of ``Charge``s through the store on a recording connection and keeps PostgreSQL's answers (rolled
back). Replayed, a batch is the store's whole code for it: the lock-and-load's decoding, the
planner's decide loop and hash chain, the write's rows and its literal script with the COMMIT, on a
connection that answers at once from what was recorded, so nothing waits and no event loop runs.

Counted under ``valgrind --tool=callgrind`` (installed separately): the instructions per batch are
the difference between two runs of different lengths, divided by the batches between them, so the
interpreter's start-up and the imports cancel out; each count comes with ``time.process_time`` per
batch, which a loaded machine moves. ``--profile`` instead prints cProfile's calls and own time per
batch by function. The store is driven through what ``EventStore.run_batch`` awaits between taking
a connection and handing it back: ``_batch`` at ``029ef2d``, ``_run`` then ``_commit`` since, so the
same file runs at both (copied into a worktree of the older commit).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pickle
import pstats
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from ledger import commands as c
from ledger.clock import SystemClock
from ledger.store import EventStore, Outcome

DB = "credits_batch_cost"
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
HOT = "hot-account"
FUNDING_UCR = 10**15  # as bench.write_path funds it: no charge is ever refused
OPERATION = "email"
WARM_UP = 20  # batches run before counting: caches filled, statements "prepared"

Answers = dict[str, list[Any]]


class _Kept:
    """A row as pickle keeps it: its column names and values (``asyncpg.Record`` does not pickle)."""

    def __init__(self, names: tuple[str, ...], values: tuple[Any, ...]) -> None:
        self.names = names
        self.values = values


def _kept(value: Any) -> Any:
    """A row, and the rows nested in it (composite values, arrays of them), as ``_Kept``."""
    if isinstance(value, asyncpg.Record):
        return _Kept(tuple(value.keys()), tuple(_kept(v) for v in value.values()))
    if isinstance(value, list):
        return [_kept(v) for v in value]
    return value


def _record(value: Any) -> Any:
    """A kept row as an ``asyncpg.Record`` again, read by name and by position as the driver's are
    (``029ef2d`` reads the composite rows by position). asyncpg builds records only in its decoder;
    its own tests build them with this function."""
    from asyncpg.protocol.protocol import _create_record  # type: ignore[import-untyped]

    if isinstance(value, _Kept):
        return _create_record({n: i for i, n in enumerate(value.names)}, tuple(_record(v) for v in value.values))
    if isinstance(value, list):
        return [_record(v) for v in value]
    return value


class Recording:
    """An asyncpg connection that keeps every query's answer, by statement."""

    def __init__(self, pg: Any) -> None:
        self.pg = pg
        self.answers: Answers = {}

    def is_in_transaction(self) -> bool:
        return bool(self.pg.is_in_transaction())

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        rows: list[Any] = await self.pg.fetch(sql, *args)
        self.answers[sql] = [_kept(r) for r in rows]
        return rows

    async def execute(self, sql: str) -> str:
        status: str = await self.pg.execute(sql)
        return status


class _Prepared:
    def get_name(self) -> str:
        return "__replayed"


class Replaying:
    """A connection inside a transaction that answers each query with what was recorded, at once."""

    def __init__(self, answers: Answers) -> None:
        self.answers: Answers = {sql: _record(rows) for sql, rows in answers.items()}
        self.sent = ""

    def is_in_transaction(self) -> bool:
        return True  # as after the previous batch's COMMIT, which opens the next transaction

    def is_closed(self) -> bool:
        return False

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        # The recorded reads, or a write run on its own (too big to go with the COMMIT), which
        # the store reads nothing from.
        return self.answers.get(sql, [])

    async def prepare(self, sql: str) -> _Prepared:
        return _Prepared()

    async def execute(self, script: str) -> str:
        self.sent = script
        return "COMMIT"


def _charges(n: int) -> list[c.Command]:
    return [c.Charge(account_id=HOT, operation=OPERATION, quantity=1) for _ in range(n)]


def _now(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never waits (its connection answers at once) to its end."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("a replayed batch waited on something")


def _one_batch(store: Any, pg: Any, commands: Sequence[c.Command]) -> list[Any]:
    """The store's code for one batch, from a connection taken to one handed back."""
    results: list[Any] = _now(_batch(store, pg, commands))
    return results


async def _batch(store: Any, pg: Any, commands: Sequence[c.Command]) -> list[Any]:
    """What ``EventStore.run_batch`` awaits between taking a connection and putting it back."""
    if hasattr(store, "_batch"):  # 029ef2d: one method
        done: list[Any] = await store._batch(None, pg, commands)
        return done
    results, replays, writes = await store._run(pg, commands)
    out: list[Any] = await store._commit(None, pg, results, replays, writes)
    return out


# ---- capture ------------------------------------------------------------------------------------

async def capture(server_url: str) -> dict[str, Any]:
    """Set up the hot account in a fresh database and record the answers to one batch's queries
    (with the rate card it was decided on)."""
    # Imported here: the replays counted under callgrind start faster without them.
    from bench.common import recreate_database
    from ledger.db import make_engine, migrate
    from ledger.rate_cards import ensure_rate_card

    url = server_url.rsplit("/", 1)[0] + "/" + DB
    await recreate_database(server_url, DB)
    await asyncio.to_thread(migrate, url)
    engine = make_engine(url, pool_size=2)
    try:
        card = await ensure_rate_card(engine)
        store = EventStore(engine, SystemClock(), lambda: card)
        try:
            for cmd in (c.OpenAccount(account_id=HOT, name=HOT),
                        c.GrantCredits(account_id=HOT, amount_ucr=FUNDING_UCR, source="purchase",
                                       reason="bench funding")):
                _check(await store.run_batch([cmd]))
            async with engine.connect() as conn:
                pg: Any = (await conn.get_raw_connection()).driver_connection
                # Spend the sample card's free grants, as the write-path bench's warm-up does.
                for _ in range(100):
                    live = await pg.fetchval(
                        "SELECT count(*) FROM grants WHERE account_id = $1 AND remaining_ucr > 0", HOT)
                    if live <= 1:
                        break
                    _check(await store.run_batch(_charges(500)))
                else:
                    raise RuntimeError("the hot account's free grants were not spent")
                await pg.execute("BEGIN")
                recording = Recording(pg)
                results, _, _ = await store._run(recording, _charges(1))
                await pg.execute("ROLLBACK")
                _check(results)
                return {"card": card, "queries": recording.answers}
        finally:
            await store.close()
    finally:
        await engine.dispose()


def _check(results: Sequence[object]) -> None:
    for r in results:
        if not isinstance(r, Outcome):
            raise RuntimeError(f"a set-up command failed: {r!r}")


# ---- replay -------------------------------------------------------------------------------------

def replay(answers: dict[str, Any], charges: int, batches: int) -> float:
    """Run ``WARM_UP`` then ``batches`` batches of ``charges``; CPU seconds per counted batch."""
    card = answers["card"]
    store = EventStore(None, SystemClock(), lambda: card)  # type: ignore[arg-type]  # never connects
    pg = Replaying(answers["queries"])
    commands = _charges(charges)
    for _ in range(WARM_UP):
        results = _one_batch(store, pg, commands)
    _check(results)
    if not all(len(r.events) == 1 for r in results):
        raise RuntimeError("a replayed charge did not append exactly one event")
    gc.collect()
    gc.freeze()  # as the service does after start-up (ledger.bootstrap)
    began = time.process_time()
    for _ in range(batches):
        _one_batch(store, pg, commands)
    return (time.process_time() - began) / max(batches, 1)


def profile(answers: dict[str, Any], charges: int, batches: int, top: int) -> list[dict[str, Any]]:
    """cProfile's calls per batch by function (the ``top`` by own time), over ``batches`` batches."""
    card = answers["card"]
    store = EventStore(None, SystemClock(), lambda: card)  # type: ignore[arg-type]  # never connects
    pg = Replaying(answers["queries"])
    commands = _charges(charges)
    for _ in range(WARM_UP):
        _one_batch(store, pg, commands)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(batches):
        _one_batch(store, pg, commands)
    prof.disable()
    stats = pstats.Stats(prof)
    rows = []
    for (file, line, name), (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{_short(file)}:{line}({name})", "calls_per_batch": ncalls / batches,
                     "own_us_per_batch": tottime / batches * 1e6, "cum_us_per_batch": cumtime / batches * 1e6})
    rows.sort(key=lambda r: -r["own_us_per_batch"])
    return rows[:top]


def _short(file: str) -> str:
    for marker in ("/site-packages/", "/ledger/", "/lib/python"):
        if marker in file:
            return file[file.index(marker) + 1:]
    return file


# ---- counting -----------------------------------------------------------------------------------

def instructions(answers_path: Path, charges: int, batches: int) -> int:
    """Instructions callgrind counts for a whole replay run of ``batches`` batches."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
             sys.executable, "-m", "bench.batch_cost", "--answers", str(answers_path), "--replay-only",
             "--charges", str(charges), "--batches", str(batches)],
            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no count in callgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def count(answers_path: Path, charges: int, short: int, long: int) -> dict[str, Any]:
    """Instructions per batch: the difference of a long and a short run, per batch between them."""
    a = instructions(answers_path, charges, short)
    b = instructions(answers_path, charges, long)
    per_batch = (b - a) / (long - short)
    return {"charges_per_batch": charges, "runs": {str(short): a, str(long): b},
            "instructions_per_batch": round(per_batch), "instructions_per_charge": round(per_batch / charges)}


def _lengths(charges: int) -> tuple[int, int]:
    """Short and long run lengths (batches) for a batch size: ~600 charges between them, at least 30 batches."""
    between = max(600 // charges, 30)
    return 10, 10 + between


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.batch_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", default=os.environ.get("BENCH_SERVER_URL", DEFAULT_SERVER_URL),
                   help="a database on the server (the scratch database is created beside it)")
    p.add_argument("--charges", default="1,16,64", help="charges per batch, comma-separated")
    p.add_argument("--answers", type=Path, help="recorded answers to reuse (else set up and record)")
    p.add_argument("--profile", action="store_true", help="cProfile's calls per batch instead of counting")
    p.add_argument("--batches", type=int, default=1000, help="batches per replay (--profile, --replay-only)")
    p.add_argument("--replay-only", action="store_true", help=argparse.SUPPRESS)  # what callgrind runs
    p.add_argument("--out", type=Path, default=Path("bench/results/batch_cost.json"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(x) for x in args.charges.split(",")]
    if args.replay_only:
        replay(pickle.loads(args.answers.read_bytes()), sizes[0], args.batches)
        return 0
    answers_path: Path = args.answers or Path(tempfile.gettempdir()) / f"batch_cost_answers_{os.getpid()}.pickle"
    if args.answers is None:
        answers_path.write_bytes(pickle.dumps(asyncio.run(capture(args.database_url))))
    answers = pickle.loads(answers_path.read_bytes())
    result: dict[str, Any] = {"benchmark": "batch_cost", "commit": _commit(), "python": sys.version.split()[0]}
    if args.profile:
        result["profile"] = {}
        for n in sizes:
            rows = profile(answers, n, args.batches, top=40)
            result["profile"][str(n)] = rows
            print(f"{n} charge(s) a batch: calls and own µs per batch, top by own time")
            for r in rows:
                print(f"  {r['calls_per_batch']:8.2f} {r['own_us_per_batch']:8.1f}  {r['function']}")
    else:
        result["counts"] = []
        for n in sizes:
            short, long = _lengths(n)
            figures = count(answers_path, n, short, long)
            figures["cpu_us_per_batch"] = round(replay(answers, n, 2000 // n) * 1e6, 1)
            result["counts"].append(figures)
            print(f"{n:3d} charge(s) a batch: {figures['instructions_per_batch']:,} instructions a batch,"
                  f" {figures['instructions_per_charge']:,} a charge ({figures['cpu_us_per_batch']} µs CPU a batch)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    # Through the module's own name, so the rows pickled by it (``_Kept``) are the same class here.
    from bench.batch_cost import main as main_

    raise SystemExit(main_())
