"""Reading the event log in order, gap-safe, from a checkpoint: the outbox every follower uses.

Positions come from a sequence and become visible out of order: a writer that took position 10
may commit after one that took 11. A reader that jumped to 11 would skip 10 forever. So the log
is read in ``(tx_id, position)`` order and only below ``pg_snapshot_xmin`` — the oldest
transaction still in flight. Everything below that is final; a writer still open (or one that
commits later) has a larger ``tx_id`` and is read when it is done. Writers take the account
locks before their first write (see ``store.py``), so per account this order is version order.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.events import Event
from ledger.rows import EVENT_COLUMNS, row_to_event


@dataclass(frozen=True, order=True)
class LogPosition:
    """Where a reader stands: after this transaction id and position."""

    tx_id: int = 0
    position: int = 0


START = LogPosition()


@dataclass(frozen=True)
class LogEntry:
    at: LogPosition
    event: Event
    #: The event's account ``version`` (its place in the account's stream).
    version: int = 0


async def read_log(conn: AsyncConnection, after: LogPosition = START, limit: int = 1000) -> list[LogEntry]:
    """Up to ``limit`` events after ``after``, oldest first, never passing a writer still in flight."""
    rows = (await conn.execute(text(
        f"SELECT tx_id::text::bigint AS tx, {EVENT_COLUMNS} FROM events"
        " WHERE (tx_id, position) > (CAST(CAST(CAST(:tx AS bigint) AS text) AS xid8), :pos)"
        " AND tx_id < pg_snapshot_xmin(pg_current_snapshot())"
        " ORDER BY tx_id, position LIMIT :limit"),
        {"tx": after.tx_id, "pos": after.position, "limit": limit})).all()
    return [LogEntry(LogPosition(r.tx, r.position), row_to_event(r), r.version) for r in rows]


@dataclass(frozen=True)
class LogSpan:
    """A stretch of the log a reader folds at once: after ``after``, up to and including ``upto``.

    Every transaction in it has finished (its ids are below the snapshot's xmin), so the rows in a
    span never change: statements that read ``events`` with ``SPAN`` in one transaction, or again
    later, see the same events.
    """

    after: LogPosition
    upto: LogPosition
    count: int

    def params(self) -> dict[str, int]:
        """The bind parameters ``SPAN`` names."""
        return {"after_tx": self.after.tx_id, "after_pos": self.after.position,
                "upto_tx": self.upto.tx_id, "upto_pos": self.upto.position}


#: The ``events`` rows of a ``LogSpan`` (bind ``LogSpan.params()``), for a ``WHERE`` clause. The
#: plain ``tx_id`` bounds say nothing the row comparisons don't, but the planner estimates only
#: those as a narrow range: without them it reads a quarter of the log for any span.
SPAN = ("tx_id >= CAST(CAST(CAST(:after_tx AS bigint) AS text) AS xid8)"
        " AND tx_id <= CAST(CAST(CAST(:upto_tx AS bigint) AS text) AS xid8)"
        " AND (tx_id, position) > (CAST(CAST(CAST(:after_tx AS bigint) AS text) AS xid8), :after_pos)"
        " AND (tx_id, position) <= (CAST(CAST(CAST(:upto_tx AS bigint) AS text) AS xid8), :upto_pos)")

#: No ceiling: ``next_span`` reads up to what every finished writer has written.
_NO_CEILING = LogPosition(2**63 - 1, 2**63 - 1)


async def next_span(conn: AsyncConnection, after: LogPosition = START, limit: int = 10_000,
                    upto: LogPosition = _NO_CEILING) -> LogSpan | None:
    """The next span of at most ``limit`` events after ``after`` (not past ``upto``), or None.

    The same gap-safe rule as ``read_log``: never past a writer still in flight. One index-only
    scan of ``(tx_id, position)``; the events themselves are read by the caller's statements.
    """
    row = (await conn.execute(text(
        "SELECT tx_id::text::bigint AS tx, position, count(*) OVER () AS n FROM ("
        " SELECT tx_id, position FROM events"
        " WHERE (tx_id, position) > (CAST(CAST(CAST(:tx AS bigint) AS text) AS xid8), :pos)"
        " AND (tx_id, position) <= (CAST(CAST(CAST(:utx AS bigint) AS text) AS xid8), :upos)"
        " AND tx_id < pg_snapshot_xmin(pg_current_snapshot())"
        " ORDER BY tx_id, position LIMIT :limit) s"
        " ORDER BY tx_id DESC, position DESC LIMIT 1"),
        {"tx": after.tx_id, "pos": after.position, "utx": upto.tx_id, "upos": upto.position,
         "limit": limit})).first()
    return None if row is None else LogSpan(after, LogPosition(row.tx, row.position), row.n)


async def log_lag_ms(conn: AsyncConnection, at: LogPosition) -> int:
    """How long the oldest event after ``at`` has waited, in ms (0 when there is none)."""
    lag = (await conn.execute(text(
        "SELECT CAST(GREATEST(0, 1000 * EXTRACT(EPOCH FROM now() - recorded_at)) AS bigint) FROM events"
        " WHERE (tx_id, position) > (CAST(CAST(CAST(:tx AS bigint) AS text) AS xid8), :pos)"
        " ORDER BY tx_id, position LIMIT 1"), {"tx": at.tx_id, "pos": at.position})).scalar()
    return int(lag or 0)


async def claim_checkpoint(conn: AsyncConnection, name: str) -> LogPosition:
    """A follower's position, locked until the caller's transaction ends.

    A second process folding the same follower waits here, then starts after what the first
    committed: a span is folded once, whoever runs it. The row must exist (``create_checkpoint``).
    """
    row = (await conn.execute(text(
        "SELECT tx_id::text::bigint AS tx, position FROM log_checkpoints WHERE name = :n FOR UPDATE"),
        {"n": name})).first()
    if row is None:
        raise LookupError(f"no checkpoint {name!r}: create_checkpoint first")
    return LogPosition(row.tx, row.position)


async def try_claim_checkpoint(conn: AsyncConnection, name: str) -> LogPosition | None:
    """``claim_checkpoint`` without waiting: None while another transaction holds it (that one is
    folding; there is nothing to do meanwhile), or while it does not exist yet."""
    row = (await conn.execute(text(
        "SELECT tx_id::text::bigint AS tx, position FROM log_checkpoints WHERE name = :n FOR UPDATE SKIP LOCKED"),
        {"n": name})).first()
    return None if row is None else LogPosition(row.tx, row.position)


async def create_checkpoint(engine: AsyncEngine, name: str) -> None:
    """Make a follower's checkpoint row (at the start of the log) if it is missing, in a transaction
    of its own: created inside a long one, a second process's claim would wait for that to end."""
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO log_checkpoints (name, tx_id, position, updated_at)"
            " VALUES (:n, CAST('0' AS xid8), 0, now()) ON CONFLICT (name) DO NOTHING"), {"n": name})


async def load_checkpoint(conn: AsyncConnection, name: str) -> LogPosition:
    """A follower's stored position (the start of the log if it never ran)."""
    row = (await conn.execute(text(
        "SELECT tx_id::text::bigint AS tx, position FROM log_checkpoints WHERE name = :n"), {"n": name})).first()
    return START if row is None else LogPosition(row.tx, row.position)


async def save_checkpoint(conn: AsyncConnection, name: str, at: LogPosition) -> None:
    """Move a follower's checkpoint forward (never back), in the caller's transaction."""
    await conn.execute(text(
        "INSERT INTO log_checkpoints (name, tx_id, position, updated_at)"
        " VALUES (:n, CAST(CAST(CAST(:tx AS bigint) AS text) AS xid8), :pos, now())"
        " ON CONFLICT (name) DO UPDATE SET tx_id = excluded.tx_id, position = excluded.position,"
        " updated_at = excluded.updated_at"
        " WHERE (log_checkpoints.tx_id, log_checkpoints.position) < (excluded.tx_id, excluded.position)"),
        {"n": name, "tx": at.tx_id, "pos": at.position})
