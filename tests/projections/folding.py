"""Folding every committed event, for tests that read the models right after writing.

``Projections.catch_up`` stops below the oldest transaction in flight anywhere on the server
(the gap-safe rule: transaction ids are server-wide), so a neighbour's long transaction on
another database can hold this one's newest events back for minutes. A test on a database of its
own knows better: once its commands have returned, nothing of its own is in flight, so it may
fold up to the last event there is. Same fold and checkpoint as the runner, only a known ceiling.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.log import LogPosition, LogSpan, claim_checkpoint, create_checkpoint, save_checkpoint
from projections.catalogue import PROJECTORS
from projections.projector import Projector


async def fold_all(engine: AsyncEngine, projectors: Sequence[Projector] = PROJECTORS) -> None:
    """Fold every event committed so far into each projector's tables (the caller's writes have returned)."""
    for projector in projectors:
        await create_checkpoint(engine, projector.checkpoint)
        async with engine.begin() as conn:
            at = await claim_checkpoint(conn, projector.checkpoint)
            row = (await conn.execute(text(
                "SELECT tx_id::text::bigint AS tx, position, count(*) OVER () AS n FROM events"
                " WHERE (tx_id, position) > (CAST(CAST(CAST(:tx AS bigint) AS text) AS xid8), :pos)"
                " ORDER BY tx_id DESC, position DESC LIMIT 1"), {"tx": at.tx_id, "pos": at.position})).first()
            if row is None:
                continue
            span = LogSpan(at, LogPosition(row.tx, row.position), row.n)
            await projector.fold(conn, span)
            await save_checkpoint(conn, projector.checkpoint, span.upto)
