"""The store's connections: kept between batches, tidied when idle, and the commit protocol.

A batch runs on the asyncpg connection behind a SQLAlchemy connection checked out of the
engine's pool. Writer loops keep theirs between batches (checking one out and back in, and
reaching its asyncpg connection, for every batch cost a visible share of a lone charge's CPU), and
a batch's COMMIT opens the next batch's transaction in the same round trip. The commit protocol
tells a batch that committed from one that did not whenever the round trip fails, so a caller is
never told "failed" about a batch that charged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.errors import OutcomeUnknown
from ledger.planner import Outcome, Result
from ledger.store.load import read_ranges
from ledger.store.sql import Pg, execute_with_literals, fetch, positional
from ledger.store.write import Writes

#: The largest write (characters of its parameters) that travels as literals with its COMMIT.
#: PostgreSQL's lexer reads a literal character by character: past this size a bound parameter
#: in a round trip of its own costs less than the literal it saves (docs/benchmarks.md).
INLINE_MAX = 32_768

#: How long a kept connection may wait between batches with the next one's transaction open.
IDLE_TRANSACTION_S = 1.0

#: Opens a batch's transaction. The batch's statements are keyed lookups driven by its own rows:
#: a generic plan serves every batch (planning a custom one per execution costs PostgreSQL a
#: visible share of a lone batch), and that plan is a nested loop of index probes. Without the two
#: join settings a plan made while a table is small hash-joins it: a sequential scan in every
#: batch. The transaction may sit open between batches (``COMMIT_AND_BEGIN``); the timeout is off
#: for it because it holds nothing meanwhile (see ``ConnectionKeeper._tidy``).
BEGIN = ("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_hashjoin = off;"
         " SET LOCAL enable_mergejoin = off; SET LOCAL idle_in_transaction_session_timeout = 0")

#: Commits a batch and opens the next one's transaction in the same round trip. An open
#: transaction takes no snapshot and no transaction id until its first query, so while it waits
#: for the next batch it holds back neither vacuum nor the log's readers, and locks nothing.
COMMIT_AND_BEGIN = "COMMIT; " + BEGIN


async def abandon(conn: AsyncConnection, pg: Pg) -> None:
    """Roll back a batch that failed. A connection that is gone, or cannot roll back, is
    invalidated: SQLAlchemy's pool never sees these statements, so it must be told."""
    if not pg.is_closed():
        try:
            if pg.is_in_transaction():
                await pg.execute("ROLLBACK")
            return
        except BaseException:
            await conn.invalidate()
            raise
    await conn.invalidate()


async def release(conn: AsyncConnection, pg: Pg) -> None:
    """Give a connection back to the pool with no transaction of ours open on it: SQLAlchemy's
    reset on return rolls back only the transactions it began itself."""
    # A connection that cannot roll back is invalidated by abandon: the pool discards it.
    with contextlib.suppress(Exception):
        await abandon(conn, pg)
    await conn.close()


class ConnectionKeeper:
    """Connections kept between batches, and how a batch on one of them commits."""

    def __init__(self, engine: AsyncEngine, *, keep_connections: int = 2) -> None:
        self.engine = engine
        #: Connections kept checked out between batches (one per writer loop), with their asyncpg
        #: connection and when a batch last finished on it.
        self._idle: list[tuple[AsyncConnection, Pg, float]] = []  # float-ok: monotonic seconds
        self._keep = keep_connections
        self._tidying: asyncio.Task[None] | None = None
        #: Per connection, the write statements prepared on it (``_write_and_commit``), by SQL.
        self._statements: weakref.WeakKeyDictionary[Pg, dict[str, tuple[str, Any]]] = weakref.WeakKeyDictionary()

    async def close(self, *, discard: bool = False) -> None:
        """Give the kept connections back to the engine's pool (``discard``: drop them instead)."""
        if self._tidying is not None:
            self._tidying.cancel()
            # It hands back a connection it was rolling back before it ends.
            with contextlib.suppress(asyncio.CancelledError):
                await self._tidying
            self._tidying = None
        idle, self._idle = self._idle, []
        for conn, pg, _ in idle:
            if discard:
                await conn.invalidate()
                await conn.close()
            else:
                await release(conn, pg)

    async def _take(self) -> tuple[AsyncConnection, Pg]:
        """A kept connection, or a new one from the pool."""
        if self._idle:
            conn, pg, _ = self._idle.pop()
            return conn, pg
        conn = await self.engine.connect()
        return conn, (await conn.get_raw_connection()).driver_connection

    async def _put_back(self, conn: AsyncConnection, pg: Pg, *, healthy: bool) -> None:
        """Keep the connection for the next batch, or give it back (all of them after a failure)."""
        if healthy and not conn.invalidated and len(self._idle) < self._keep:
            self._idle.append((conn, pg, time.monotonic()))
            if self._tidying is None or self._tidying.done():
                self._tidying = asyncio.create_task(self._tidy())
            return
        await release(conn, pg)
        if not healthy:
            # A failed batch may mean the server restarted: the kept connections would fail the
            # retries too (and poison the pool if handed back), so they are dropped and the next
            # batches start on fresh ones.
            await self.close(discard=True)

    async def _tidy(self) -> None:
        """End the next batch's transaction on connections that have waited ``IDLE_TRANSACTION_S``.

        It holds nothing, but an open transaction that lasts while the ledger is quiet looks like
        a leak to an operator watching ``pg_stat_activity``, and it keeps the connection's
        ``xact_start`` (and monitoring built on it) meaningless. The next batch opens one again.
        """
        while any(pg.is_in_transaction() for _, pg, _ in self._idle):
            await asyncio.sleep(IDLE_TRANSACTION_S)
            cutoff = time.monotonic() - IDLE_TRANSACTION_S
            for entry in [e for e in self._idle if e[2] <= cutoff and e[1].is_in_transaction()]:
                if entry not in self._idle:  # a batch took it meanwhile
                    continue
                # Out of the list while it rolls back, so no batch starts on it meanwhile.
                self._idle.remove(entry)
                conn, pg, _ = entry
                try:
                    await pg.execute("ROLLBACK")
                except asyncio.CancelledError:  # close() stops this task: hand the connection back first
                    await release(conn, pg)
                    raise
                except Exception:
                    await release(conn, pg)
                    continue
                if len(self._idle) < self._keep:
                    self._idle.append(entry)
                else:
                    await conn.close()

    async def _commit(self, conn: AsyncConnection, pg: Pg, results: list[Result | None],
                      replays: dict[int, tuple[str, int, int]], writes: Writes | None) -> list[Result]:
        """Write and commit a decided batch; its results, replays read back once committed."""
        try:
            # The write goes with the COMMIT when the batch appends events (its first one tells
            # whether it committed), reads nothing afterwards and is small (see INLINE_MAX).
            first_event = writes.first_event if writes is not None and not replays else None
            if writes is not None and (first_event is None or writes.size() > INLINE_MAX):
                first_event = None
                await writes.run(pg)
        except BaseException:
            await abandon(conn, pg)
            raise
        if writes is not None and first_event is not None:
            await self._write_and_commit(conn, pg, writes, first_event)
            return results  # type: ignore[return-value]
        # The next batch's transaction is opened in this round trip, except when this one still
        # reads (the replays, below, outside any transaction).
        chained = not replays
        try:
            status = await pg.execute(COMMIT_AND_BEGIN if chained else "COMMIT")
        except Exception as exc:
            opened_after = chained and not pg.is_closed() and pg.is_in_transaction()
            await abandon(conn, pg)
            if not opened_after:
                # The commit may or may not have landed: never retry blindly, the caller retries
                # with the same idempotency key and gets the first result if it did.
                raise OutcomeUnknown(f"commit failed in flight: {exc}") from exc
            # A COMMIT that fails ends the transaction all the same, so the one open now began
            # after a COMMIT that succeeded: only opening the next batch's transaction failed.
        # A COMMIT that ends an aborted transaction rolls it back (and says so in its status). The
        # chained form reports its last statement's status instead, but every statement of this
        # transaction has returned without error, so it was not aborted.
        if not chained and status != "COMMIT":
            raise OutcomeUnknown(f"the batch's transaction ended with {status!r}")
        # Replays of keys committed by earlier transactions: read their first result.
        if replays:
            found = await read_ranges(pg, list(replays.values()))
            for i, (account_id, first, last) in replays.items():
                results[i] = Outcome(tuple(found[(account_id, first, last)]), True)
        return results  # type: ignore[return-value]

    async def _write_and_commit(self, conn: AsyncConnection, pg: Pg, writes: Writes,
                                first_event: tuple[str, int, UUID]) -> None:
        """Write, commit and open the next batch's transaction in one round trip.

        The write goes as ``EXECUTE`` of a statement prepared on this connection (its generic
        plan, as when asyncpg runs it) with its parameters as literals, in one simple-protocol
        message with the COMMIT: the extended protocol carries one statement per round trip.
        If the message fails, the batch committed exactly when its first event is in the log,
        which this connection reads at once: no other check tells a failed write from a failure
        after the COMMIT, and retrying a batch that committed would charge twice.
        """
        sql, names = positional(writes.statement())
        try:
            name = await self._prepared(pg, sql)
            script = execute_with_literals(name, [writes.params[n] for n in names]) + "; "
        except BaseException:
            await abandon(conn, pg)
            raise
        try:
            await pg.execute(script + COMMIT_AND_BEGIN)
            return
        except Exception as exc:
            failure = exc
        self._statements.pop(pg, None)  # one may be gone (a reset connection): prepare them again
        account_id, version, event_id = first_event
        try:
            await abandon(conn, pg)  # the failed batch, or the next one's transaction
            if pg.is_closed():
                raise failure
            landed = [r["event_id"] for r in await fetch(
                pg, "SELECT event_id FROM events WHERE account_id = :a AND version = :v",
                {"a": account_id, "v": version})]
        except Exception as exc:
            # The commit may or may not have landed: never retry blindly, the caller retries
            # with the same idempotency key and gets the first result if it did.
            raise OutcomeUnknown(f"commit failed in flight: {failure}") from exc
        if landed != [event_id]:
            raise failure  # not committed: the writer retries the commands one by one

    async def _prepared(self, pg: Pg, sql: str) -> str:
        """The name of ``sql`` prepared on ``pg``, once; a batch writes in one of a few shapes."""
        statements = self._statements.setdefault(pg, {})
        found = statements.get(sql)
        if found is None:
            if len(statements) >= 64:
                statements.clear()  # asyncpg deallocates the ones no longer referenced
            statement = await pg.prepare(sql)
            # The statement is kept with its name: asyncpg deallocates it once unreferenced.
            found = statements[sql] = (statement.get_name(), statement)
        name: str = found[0]
        return name
