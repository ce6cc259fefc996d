"""The event store: one transaction per batch of commands, inline state updated with the append.

``EventStore.run_batch`` is the only code that writes ``events`` and the inline tables
(``accounts``, ``grants``, counters, reservations, deployments, ...). For one batch it takes the
accounts' locks, loads what the commands need (``load``), decides each command in memory in
arrival order (``ledger.planner``), writes every row with one multi-row statement per table
(``write``) and commits once (``connections``). A refused command yields its error and records
nothing; its neighbours are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import commands as c
from ledger.clock import Clock
from ledger.errors import UnknownAccount
from ledger.planner import NeedsCounters, Outcome, Result, new_uuid, plan_batch
from ledger.rates import RateCard
from ledger.rows import EVENT_COLUMNS, row_to_event
from ledger.state import AccountState
from ledger.store.connections import BEGIN, ConnectionKeeper, abandon
from ledger.store.load import load, load_counters, lock_key, read_ranges, read_versions
from ledger.store.sql import Pg
from ledger.store.write import Writes, collect

__all__ = ["EVENT_COLUMNS", "EventStore", "Outcome", "Result", "lock_key", "new_uuid", "read_ranges",
           "read_versions", "row_to_event"]


class EventStore(ConnectionKeeper):
    """Appends events and keeps inline state exact, batch by batch."""

    def __init__(self, engine: AsyncEngine, clock: Clock, card: Callable[[], RateCard], *,
                 keep_connections: int = 2) -> None:
        super().__init__(engine, keep_connections=keep_connections)
        self.clock = clock
        self._card = card

    async def run_batch(self, commands: Sequence[c.Command]) -> list[Result]:
        """Decide and commit ``commands`` in one transaction; one result per command, in order."""
        conn, pg = await self._take()
        healthy = False
        try:
            try:
                results, replays, writes = await self._run(pg, commands)
            except BaseException:
                await abandon(conn, pg)
                raise
            out = await self._commit(conn, pg, results, replays, writes)
            healthy = True
            return out
        finally:
            await self._put_back(conn, pg, healthy=healthy)

    async def _run(
        self, pg: Pg, commands: Sequence[c.Command]
    ) -> tuple[list[Result | None], dict[int, tuple[str, int, int]], Writes | None]:
        """Open the batch's transaction on ``pg``, load and decide; the caller writes and commits."""
        now = self.clock.now()
        card = self._card()
        account_ids = sorted({cmd.account_id for cmd in commands})
        # Per-account serialisation: every writer takes the accounts' advisory locks before
        # reading them, in one global order (the key's value) so two batches never deadlock; the
        # load takes them and then reads, in one round trip (``credits_lock_and_load``). Advisory
        # locks (not SELECT ... FOR UPDATE) because they do not assign a transaction id: the xid
        # is taken at the first write, after every lock is held, so a later writer of an account
        # always has a larger xid, and the log read in (tx_id, position) order keeps each
        # account's events in version order.
        if not pg.is_in_transaction():  # else the previous batch's COMMIT opened it
            await pg.execute(BEGIN)
        loaded = await load(pg, commands, account_ids, now, card, lock=True)
        while True:
            plan = plan_batch(commands, loaded, now, card)
            if not isinstance(plan, NeedsCounters):
                return plan.results, plan.replays, None if plan.writes is None else collect(plan.writes)
            # A debit near MAX_SPEND_UCR, or a gate the load did not foresee, reads spend counters:
            # load that account's (still under its lock) and decide the batch again.
            await load_counters(pg, loaded, commands, {plan.account_id}, now)

    async def snapshot(self, conn: AsyncConnection, command: c.Command, now: datetime,
                       card: RateCard) -> AccountState:
        """The state ``command`` would be decided on, read without locks (for dry runs)."""
        pg: Pg = (await conn.get_raw_connection()).driver_connection
        loaded = await load(pg, [command], [command.account_id], now, card, lock=False)
        await load_counters(pg, loaded, [command], {command.account_id}, now)
        state = loaded.states.get(command.account_id)
        if state is None:
            raise UnknownAccount(command.account_id)
        return state
