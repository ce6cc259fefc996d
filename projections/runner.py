"""Keeping the read models current: each projector folds the log from its checkpoint, a span at a
time, and moves the checkpoint in the same transaction as its rows.

A crash anywhere in a span rolls back the rows with the checkpoint, so the span is folded again
whole, never half and never twice. Several processes may run this at once (``credits serve``,
``credits worker``, ``credits projections run``): the checkpoint row's lock lets one fold a given
projector's span at a time (``ledger.log.claim_checkpoint``); the others skip it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.log import (
    create_checkpoint,
    next_span,
    save_checkpoint,
    try_claim_checkpoint,
)
from projections.catalogue import PROJECTORS
from projections.projector import Projector

log = logging.getLogger(__name__)

#: Events folded per transaction: enough that a span costs a few statements per thousand events,
#: few enough that the fold's transaction stays short. While it is open it holds back every log
#: reader on the server (the relay, the other read models): its id is below what they may read.
BATCH = 2_000


async def project_once(engine: AsyncEngine, projector: Projector, batch: int = BATCH) -> int:
    """Fold the next span of the log into ``projector``'s tables; how many events it covered."""
    async with engine.begin() as conn:
        # Another process folding it now: skip this round rather than queue behind it (every API
        # process of ``credits serve --workers N`` runs projections).
        at = await try_claim_checkpoint(conn, projector.checkpoint)
        if at is None:
            missing = (await conn.execute(text("SELECT NOT EXISTS (SELECT FROM log_checkpoints WHERE name = :n)"),
                                          {"n": projector.checkpoint})).scalar_one()
        else:
            span = await next_span(conn, at, batch)
            if span is None:
                return 0
            await projector.fold(conn, span)
            await save_checkpoint(conn, projector.checkpoint, span.upto)
            return span.count
    if missing:  # its first run: make the row, then fold
        await create_checkpoint(engine, projector.checkpoint)
        return await project_once(engine, projector, batch)
    return 0


class Projections:
    """Runs every projector until stopped: right away while there is a backlog, every ``idle_s`` when caught up."""

    def __init__(self, engine: AsyncEngine, projectors: Sequence[Projector] = PROJECTORS, *,
                 batch: int = BATCH) -> None:
        self.engine = engine
        self.projectors = tuple(projectors)
        self.batch = batch

    async def run_once(self) -> int:
        """One span for each projector; the events covered in all."""
        return sum([await project_once(self.engine, p, self.batch) for p in self.projectors])

    async def catch_up(self) -> int:
        """Fold until every projector has read all the log that is final now."""
        total = 0
        while moved := await self.run_once():
            total += moved
        return total

    async def run(self, stop: asyncio.Event, *, idle_s: float = 0.2, busy_s: float = 0.02,  # float-ok
                  retry_s: float = 1.0) -> None:  # float-ok: durations
        delay = idle_s
        while not stop.is_set():
            try:
                moved = await self.run_once()
            except Exception as exc:  # the database is away: retry; the checkpoint never skips
                log.warning("projections stalled: %s: %s", type(exc).__name__, exc)
                await _sleep(stop, retry_s)
                continue
            # A full span: more is waiting. Some: the newest events may still be in flight, look
            # again soon. None: back off to idle_s.
            delay = 0.0 if moved >= self.batch else busy_s if moved else min(max(delay * 2, busy_s), idle_s)
            if delay:
                await _sleep(stop, delay)


@contextlib.asynccontextmanager
async def projecting(engine: AsyncEngine, *, idle_s: float = 0.2) -> AsyncIterator[None]:  # float-ok
    """Keep the read models current on the running loop until the block ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(Projections(engine).run(stop, idle_s=idle_s), name="projections")
    try:
        yield
    finally:
        stop.set()
        started = time.monotonic()
        try:
            await asyncio.wait_for(task, timeout=30)
        except Exception:
            log.exception("projections did not stop cleanly after %.1f s", time.monotonic() - started)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:  # float-ok: a duration
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
