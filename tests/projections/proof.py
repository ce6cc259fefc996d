"""Helpers the proofs share: the log's end, folding every projector to it, and a projector's tables
as exact text (to compare row for row)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.log import START, LogPosition, load_checkpoint
from projections.catalogue import PROJECTORS
from projections.projector import Projector
from projections.runner import project_once

#: Only a broken projector gets here: ``pg_snapshot_xmin`` is cluster-wide, so another session's
#: open transaction may hold a reader back for a moment, never for this long.
DEADLINE_S = 60.0


async def log_end(engine: AsyncEngine) -> LogPosition:
    """The position of the last committed event (call it once the writers are done)."""
    async with engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT tx_id::text::bigint AS tx, position FROM events"
            " ORDER BY tx_id DESC, position DESC LIMIT 1"))).first()
    return START if row is None else LogPosition(row.tx, row.position)


async def checkpoints(engine: AsyncEngine, projectors: Sequence[Projector] = PROJECTORS) -> dict[str, LogPosition]:
    async with engine.connect() as conn:
        return {p.name: await load_checkpoint(conn, p.checkpoint) for p in projectors}


async def fold_to_end(engine: AsyncEngine, projectors: Sequence[Projector] = PROJECTORS,
                      batches: Sequence[int] = (10_000,)) -> LogPosition:
    """Fold each projector until its checkpoint is the last event's, with spans of the given sizes in
    turn; the log's end."""
    end = await log_end(engine)
    deadline = time.monotonic() + DEADLINE_S
    for p in projectors:
        i = 0
        while (await checkpoints(engine, [p]))[p.name] < end:
            moved = await project_once(engine, p, batch=batches[i % len(batches)])
            i += 1
            if not moved:
                assert time.monotonic() < deadline, f"{p.name} never reached the end of the log {end}"
                await asyncio.sleep(0.01)
    return end


async def table_rows(engine: AsyncEngine, table: str) -> list[str]:
    """Every row of ``table`` as its jsonb text, sorted: equal lists are equal tables, row for row."""
    async with engine.connect() as conn:
        return list((await conn.execute(text(f"SELECT to_jsonb(t)::text FROM {table} t ORDER BY 1"))).scalars())


async def tables(engine: AsyncEngine, projectors: Sequence[Projector] = PROJECTORS) -> dict[str, list[str]]:
    return {t: await table_rows(engine, t) for p in projectors for t in p.tables}
