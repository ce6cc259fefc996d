"""A helper process for the multi-process tests, and the code that runs several of them.

Each process opens its own engine and ``Ledger`` (the stored rate card, a manual clock at the
instant the parent gives), touches its ``--ready`` file, waits for the ``--go`` file so every
process starts firing at once, then runs ``--count`` concurrent ``Charge`` commands on one
account (all with ``--key`` when given) and prints one JSON result per command on stdout.

Run as ``python -m tests.ledger._charger ...`` from the repository root; tests call
``run_chargers`` instead. ``check_stream`` re-checks an account's stored events the way
``verify`` does (versions 1..N, the hash chain, balances after) for the tests that hammer it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.chain import GENESIS, event_hash
from ledger.clock import ManualClock
from ledger.db import make_engine
from ledger.errors import LedgerError
from ledger.rate_cards import ensure_rate_card
from ledger.service import Ledger
from ledger.store import Outcome

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Generous: only reached when a process is broken, never part of an assertion.
BARRIER_TIMEOUT_S = 60.0


def _result_json(result: Outcome | BaseException) -> dict[str, Any]:
    if isinstance(result, Outcome):
        return {"events": [str(e.event_id) for e in result.events], "replayed": result.replayed}
    if isinstance(result, LedgerError):
        out: dict[str, Any] = {"error": type(result).__name__, "status": result.status}
        reason = getattr(result, "reason", None)
        if reason is not None:
            out["reason"] = reason
        return out
    return {"error": type(result).__name__, "status": 500, "detail": str(result)}


async def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while not await asyncio.to_thread(path.exists):
        if time.monotonic() > deadline:
            raise SystemExit(f"no {path.name} within {BARRIER_TIMEOUT_S} s")
        await asyncio.sleep(0.002)


async def _main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="_charger")
    parser.add_argument("--url", required=True)
    parser.add_argument("--account", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--operation", default="email")
    parser.add_argument("--quantity", type=int, default=1000)
    parser.add_argument("--key", default=None)
    parser.add_argument("--now", required=True)
    parser.add_argument("--ready", required=True)
    parser.add_argument("--go", required=True)
    parser.add_argument("--max-batch", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args(argv)

    engine = make_engine(args.url, pool_size=args.concurrency + 1)
    try:
        card = await ensure_rate_card(engine)
        ledger = Ledger(engine, ManualClock(datetime.fromisoformat(args.now)), card, max_batch=args.max_batch,
                        concurrency=args.concurrency)
        await ledger.start()
        try:
            commands = [c.Charge(account_id=args.account, operation=args.operation, quantity=args.quantity,
                                 idempotency_key=args.key) for _ in range(args.count)]
            # Open the pool's connections before the barrier so the start is as simultaneous as can be.
            conns = [await engine.connect() for _ in range(args.concurrency)]
            for conn in conns:
                await conn.close()
            await asyncio.to_thread(Path(args.ready).touch)
            await _wait_for(Path(args.go))
            results = await asyncio.gather(*(ledger.execute(cmd) for cmd in commands), return_exceptions=True)
        finally:
            await ledger.stop()
    finally:
        await engine.dispose()
    print(json.dumps([_result_json(r) for r in results]))
    return 0


@dataclass(frozen=True)
class ProcessResults:
    """Every process's results, in process order, then command order."""

    per_process: list[list[dict[str, Any]]]

    @property
    def all(self) -> list[dict[str, Any]]:
        return [r for results in self.per_process for r in results]


async def run_chargers(
    *,
    url: str,
    account_id: str,
    processes: int,
    count: int,
    now: datetime,
    workdir: Path,
    key: str | None = None,
    operation: str = "email",
    quantity: int = 1000,
    max_batch: int = 512,
    concurrency: int = 2,
) -> ProcessResults:
    """Start ``processes`` charger processes, release them together, return what each printed."""
    go = workdir / "go"
    ready = [workdir / f"ready-{i}" for i in range(processes)]
    extra = ["--key", key] if key is not None else []
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.ledger._charger", "--url", url, "--account", account_id,
            "--count", str(count), "--operation", operation, "--quantity", str(quantity), "--now", now.isoformat(),
            "--ready", str(ready[i]), "--go", str(go), "--max-batch", str(max_batch),
            "--concurrency", str(concurrency), *extra,
            cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for i in range(processes)
    ]
    outputs = [asyncio.ensure_future(p.communicate()) for p in procs]
    try:
        deadline = time.monotonic() + BARRIER_TIMEOUT_S
        while not all(r.exists() for r in ready):
            for p, out in zip(procs, outputs, strict=True):
                if out.done():
                    _, err = out.result()
                    raise AssertionError(f"charger exited early ({p.returncode}): {err.decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("charger processes did not get ready")
            await asyncio.sleep(0.01)
        go.touch()
        done = await asyncio.gather(*outputs)
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
        await asyncio.gather(*outputs, return_exceptions=True)
        for p in procs:
            await p.wait()
    per_process: list[list[dict[str, Any]]] = []
    for p, (out_bytes, err_bytes) in zip(procs, done, strict=True):
        assert p.returncode == 0, err_bytes.decode()[-2000:]
        per_process.append(json.loads(out_bytes.decode().strip().splitlines()[-1]))
    return ProcessResults(per_process)


@dataclass(frozen=True)
class StoredEvent:
    version: int
    event_id: str
    type: str
    amount_ucr: int
    balance_after_ucr: int
    idempotency_key: str | None
    data: dict[str, Any]


async def check_stream(engine: AsyncEngine, account_id: str) -> list[StoredEvent]:
    """Assert the account's stored stream is sound; return its events in version order.

    Versions are exactly 1..N, every ``hash`` is ``event_hash`` of the previous hash and the row
    (as ``verify`` recomputes it), each ``balance_after_ucr`` is the previous one plus
    ``amount_ucr``, and the ``accounts`` row agrees with the last event.
    """
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT account_id, version, event_id, type, schema_version, data, idempotency_key, amount_ucr,"
            " balance_after_ucr, occurred_at, recorded_at, hash FROM events WHERE account_id = :a"
            " ORDER BY version"), {"a": account_id})).all()
        acct = (await conn.execute(text(
            "SELECT version, last_hash, balance_ucr FROM accounts WHERE account_id = :a"),
            {"a": account_id})).one()
    assert [r.version for r in rows] == list(range(1, len(rows) + 1)), "versions are not 1..N"
    prev, balance = GENESIS, 0
    out: list[StoredEvent] = []
    for r in rows:
        recomputed = event_hash(
            prev, account_id=r.account_id, version=r.version, event_id=r.event_id, type_=r.type,
            schema_version=r.schema_version, idempotency_key=r.idempotency_key, amount_ucr=r.amount_ucr,
            balance_after_ucr=r.balance_after_ucr, occurred_at=r.occurred_at, recorded_at=r.recorded_at,
            data=r.data)
        assert bytes(r.hash) == recomputed, f"hash chain broken at version {r.version}"
        prev = bytes(r.hash)
        balance += r.amount_ucr
        assert r.balance_after_ucr == balance, f"balance after version {r.version}"
        out.append(StoredEvent(r.version, str(r.event_id), r.type, r.amount_ucr, r.balance_after_ucr,
                               r.idempotency_key, r.data))
    assert acct.version == len(rows)
    assert bytes(acct.last_hash) == prev
    assert acct.balance_ucr == balance
    return out


if __name__ == "__main__":
    raise SystemExit(asyncio.run(_main(sys.argv[1:])))
