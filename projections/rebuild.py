"""Folding a projector afresh: into session-temporary copies of its tables (``pg_temp.<table>``).

``rebuild`` then swaps the fresh rows in, in one transaction, so readers see the old rows until
the new ones are complete; ``differences`` compares them with the live tables instead
(``credits verify``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.log import START, LogPosition, claim_checkpoint, create_checkpoint, load_checkpoint, next_span
from projections.projector import Projector

#: Events per transaction while rebuilding (temporary tables are not WAL-logged: large is fine).
BATCH = 50_000


@dataclass(frozen=True)
class Rebuilt:
    projector: str
    events: int
    at: LogPosition


async def _live_names(conn: AsyncConnection, projector: Projector) -> dict[str, str]:
    """Each table's schema-qualified name, found before a temporary copy hides it."""
    names = {}
    for table in projector.tables:
        row = (await conn.execute(text(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(:t)"), {"t": table})).scalar()
        if row is None or row.startswith("pg_temp"):
            raise RuntimeError(f"table {table} is missing: run `credits migrate`")
        names[table] = row
    return names


async def _fresh_tables(conn: AsyncConnection, projector: Projector, names: dict[str, str],
                        on_commit: str) -> None:
    for table in projector.tables:
        await conn.execute(text(
            f"CREATE TEMPORARY TABLE {table} (LIKE {names[table]} INCLUDING ALL) ON COMMIT {on_commit}"))
        # Only the primary key (rollups' ON CONFLICT needs it): the copy is filled, then read whole.
        for (index,) in (await conn.execute(text(
                "SELECT quote_ident(c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid = CAST(:t AS regclass) AND NOT i.indisprimary"),
                {"t": f"pg_temp.{table}"})).all():
            await conn.execute(text(f"DROP INDEX pg_temp.{index}"))


async def _fold(conn: AsyncConnection, projector: Projector, after: LogPosition, upto: LogPosition | None,
                batch: int, on_span: Callable[[int], None] | None, commit: bool) -> tuple[LogPosition, int]:
    """Fold spans after ``after`` (up to ``upto``, or what is final now); where it ended and the events."""
    at, events = after, 0
    while True:
        span = await (next_span(conn, at, batch) if upto is None else next_span(conn, at, batch, upto))
        if span is None:
            return at, events
        await projector.fold(conn, span, {t: f"pg_temp.{t}" for t in projector.tables})
        if commit:
            await conn.commit()
        at, events = span.upto, events + span.count
        if on_span is not None:
            on_span(span.count)


async def rebuild(engine: AsyncEngine, projector: Projector, *, batch: int = BATCH,
                  on_span: Callable[[int], None] | None = None) -> Rebuilt:
    """Fold ``projector`` from position 0 into fresh tables, then swap them in.

    The long fold runs beside the live projector; the swap catches up with the log and replaces
    the live rows and checkpoint in one transaction that holds the checkpoint's lock, so the live
    projector waits for it and then goes on from the new checkpoint.
    """
    await create_checkpoint(engine, projector.checkpoint)
    async with engine.connect() as conn:
        names = await _live_names(conn, projector)
        await _fresh_tables(conn, projector, names, "PRESERVE ROWS")
        await conn.commit()
        try:
            at, events = await _fold(conn, projector, START, None, batch, on_span, commit=True)
            live = await claim_checkpoint(conn, projector.checkpoint)  # waits for a live fold to end
            at, more = await _fold(conn, projector, at, None, batch, on_span, commit=False)
            # Both read the same log up to what is final; the fresh fold read later, so never less.
            if at < live:
                raise RuntimeError(f"fresh fold of {projector.name} at {at} is behind its checkpoint {live}")
            for table in projector.tables:
                # DELETE, not TRUNCATE: readers keep the old rows until this commits, never wait.
                await conn.execute(text(f"DELETE FROM {names[table]}"))
                await conn.execute(text(f"INSERT INTO {names[table]} SELECT * FROM pg_temp.{table}"))
            await conn.execute(text(
                "UPDATE log_checkpoints SET tx_id = CAST(CAST(CAST(:tx AS bigint) AS text) AS xid8),"
                " position = :pos, updated_at = now() WHERE name = :n"),
                {"n": projector.checkpoint, "tx": at.tx_id, "pos": at.position})
            await conn.commit()
        finally:
            await conn.rollback()
            for table in projector.tables:
                await conn.execute(text(f"DROP TABLE IF EXISTS pg_temp.{table}"))
            await conn.commit()
    return Rebuilt(projector.name, events + more, at)


@dataclass(frozen=True)
class Difference:
    projector: str
    table: str
    #: 'read model only' (a row a fresh fold does not make) or 'fresh fold only' (a row missing).
    side: str
    row: dict[str, Any]

    def __str__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.row.items())
        return f"projection {self.projector}: {self.table} row in the {self.side}: {shown}"


async def differences(engine: AsyncEngine, projector: Projector, *, limit: int = 20,
                      batch: int = BATCH) -> list[Difference]:
    """Rows where ``projector``'s tables differ from a fresh fold up to its checkpoint (at most
    ``limit`` per table and side). One repeatable-read transaction, so the live tables and the
    checkpoint agree with each other while the live projector goes on."""
    found: list[Difference] = []
    async with engine.connect() as raw:
        conn = await raw.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            at = await load_checkpoint(conn, projector.checkpoint)
            names = await _live_names(conn, projector)
            await _fresh_tables(conn, projector, names, "DROP")
            await _fold(conn, projector, START, at, batch, None, commit=False)
            for table in projector.tables:
                for side, a, b in (("read model only", names[table], f"pg_temp.{table}"),
                                   ("fresh fold only", f"pg_temp.{table}", names[table])):
                    rows = (await conn.execute(text(
                        f"SELECT * FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b}) d LIMIT :n"),
                        {"n": limit})).mappings().all()
                    found += [Difference(projector.name, table, side, dict(r)) for r in rows]
    return found
