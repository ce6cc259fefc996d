"""The event store: one transaction per batch of commands, inline state updated with the append.

``EventStore.run_batch`` is the only code that writes ``events`` and the inline tables
(``accounts``, ``grants``, counters, reservations, deployments, ...). For one batch it takes the
accounts' locks, loads what the commands need, decides each command in memory in arrival order,
writes every row with one multi-row statement per table and commits once. A refused command
yields its error and records nothing; its neighbours are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from uuid import UUID

import orjson
import uuid_utils
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import commands as c
from ledger.chain import GENESIS, canonical_json, event_hash
from ledger.clock import Clock, day_key, month_key
from ledger.decide import Context, execute
from ledger.errors import IdempotencyConflict, LedgerError, OutcomeUnknown, UnknownAccount
from ledger.events import (
    ApiKeyCreated,
    ApiKeyRevoked,
    Attribution,
    CouponApplied,
    Event,
    UsageMetered,
    event_data,
    event_from_row,
)
from ledger.grants import Grant
from ledger.rates import RateCard, coupon_code
from ledger.state import (
    AccountState,
    Budget,
    CounterKey,
    CountersNotLoaded,
    Deployment,
    Limit,
    Purchase,
    Reservation,
    hour_due_at,
    spend_keys,
)


@lru_cache(maxsize=512)
def _sql(statement: str) -> TextClause:
    """The statement as a ``text()`` construct, built once per distinct string.

    Building ``text()`` parses its bind parameters with a regex every time; the hot path runs
    the same few statements (and the same few shapes of the batch's write) over and over.
    """
    return text(statement)


#: An asyncpg connection (asyncpg ships no type hints).
Pg = Any

_PARAM = re.compile(r"(?<![:\w]):(\w+)")


@lru_cache(maxsize=512)
def _positional(statement: str) -> tuple[str, tuple[str, ...]]:
    """``statement`` with its ``:name`` parameters as asyncpg's ``$n``, and the names in order."""
    names: list[str] = []

    def number(m: re.Match[str]) -> str:
        if m.group(1) not in names:
            names.append(m.group(1))
        return f"${names.index(m.group(1)) + 1}"

    return _PARAM.sub(number, statement), tuple(names)


async def _fetch(pg: Pg, statement: str, params: dict[str, Any]) -> list[Any]:
    """Run ``statement`` (named parameters) on the asyncpg connection; its rows."""
    sql, names = _positional(statement)
    rows: list[Any] = await pg.fetch(sql, *[params[n] for n in names])
    return rows


async def _abandon(conn: AsyncConnection, pg: Pg) -> None:
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


async def _release(conn: AsyncConnection, pg: Pg) -> None:
    """Give a connection back to the pool with no transaction of ours open on it: SQLAlchemy's
    reset on return rolls back only the transactions it began itself."""
    # A connection that cannot roll back is invalidated by _abandon: the pool discards it.
    with contextlib.suppress(Exception):
        await _abandon(conn, pg)
    await conn.close()


#: The largest write (characters of its parameters) that travels as literals with its COMMIT.
#: PostgreSQL's lexer reads a literal character by character: a 377 KB batch of 1,000 events
#: cost 1.2-1.9 ms more that way than as a bound parameter, against ~0.2 ms for the round trip
#: saved; at 37 KB (100 events) the two were within the noise.
_INLINE_MAX = 32_768

#: How long a kept connection may wait between batches with the next one's transaction open.
IDLE_TRANSACTION_S = 1.0

#: Opens a batch's transaction. The batch's statements are keyed lookups driven by its own rows:
#: a generic plan serves every batch (planning a custom one per execution cost PostgreSQL ~20 % of
#: a lone batch), and that plan is a nested loop of index probes. Without the two join settings a
#: plan made while a table is small hash-joins it: a sequential scan in every batch. The
#: transaction may sit open between batches (``_COMMIT_AND_BEGIN``); the timeout is off for it
#: because it holds nothing meanwhile (see ``EventStore._tidy``).
_BEGIN = ("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_hashjoin = off;"
          " SET LOCAL enable_mergejoin = off; SET LOCAL idle_in_transaction_session_timeout = 0")

#: Commits a batch and opens the next one's transaction in the same round trip. An open
#: transaction takes no snapshot and no transaction id until its first query, so while it waits
#: for the next batch it holds back neither vacuum nor the log's readers, and locks nothing.
_COMMIT_AND_BEGIN = "COMMIT; " + _BEGIN

def new_uuid() -> UUID:
    """A UUIDv7: time-ordered, so ids sort roughly by creation."""
    return UUID(bytes=uuid_utils.uuid7().bytes)


def lock_key(account_id: str) -> int:
    """The advisory-lock key of an account: a stable signed 64-bit hash of its id."""
    return int.from_bytes(hashlib.blake2b(account_id.encode(), digest_size=8).digest(), "big", signed=True)


@dataclass(frozen=True)
class Outcome:
    """What a command produced: its events (the first result again when ``replayed``)."""

    events: tuple[Event, ...]
    replayed: bool = False


Result = Outcome | LedgerError


@dataclass
class _Loaded:
    """Everything read for one batch, per account, before deciding."""

    states: dict[str, AccountState] = field(default_factory=dict)
    keys: dict[tuple[str, str], tuple[bytes, int, int]] = field(default_factory=dict)
    coupon_stock: dict[str, int | None] = field(default_factory=dict)


#: Commands that debit or gate on spend, and so read the spend counters of ``spend_keys``.
_SPENDING: tuple[type[c.Command], ...] = (c.Charge, c.Meter, c.Reserve, c.Settle, c.StartDeployment,
                                          c.ResumeDeployment, c.ChargeDeploymentHour)


def _counter_keys(commands: Sequence[c.Command], states: Mapping[str, AccountState], accounts: set[str],
                  now: datetime) -> list[tuple[str, CounterKey]]:
    """Every spend counter the batch's commands on ``accounts`` may read, per account.

    A debit's (and a gate's) at its ``occurred_at`` (metered usage may be backdated), else at
    ``now``; an hour charge caught up across a day or month also adds to the period it fell due
    in. An alert check reads the account's month and every limited subject's day and month.
    Attributions repeat, so ``spend_keys`` runs once per distinct one.
    """
    out: set[tuple[str, CounterKey]] = set()
    seen: dict[tuple[str | None, str | None, str | None, datetime], tuple[CounterKey, ...]] = {}
    for cmd in commands:
        a = cmd.account_id
        if a not in accounts:
            continue
        if type(cmd) in _SPENDING:
            attr: Attribution = getattr(cmd, "attribution", None) or _NO_ATTR
            when: datetime = getattr(cmd, "occurred_at", None) or now
            memo = (attr.agent, attr.member, attr.run, when)
            keys = seen.get(memo)
            if keys is None:
                keys = seen[memo] = spend_keys(attr, when)
            out.update((a, k) for k in keys)
        if type(cmd) is c.ChargeDeploymentHour:
            d = states[a].deployments.get(cmd.deployment_id)
            if d is not None and d.segment_started_at is not None:
                due = max(hour_due_at(d.segment_started_at, d.used, cmd.hour_index), d.segment_started_at)
                out.update((a, k) for k in spend_keys(_NO_ATTR, due))
        elif type(cmd) is c.RaiseAlert:
            out.update([(a, ("account", "", month_key(now))), (a, (cmd.scope, cmd.subject, cmd.period))])
        elif type(cmd) is c.CheckAlerts:
            out.add((a, ("account", "", month_key(now))))
            out.update((a, k) for k in spend_keys(cmd.attribution, now))
            out.update((a, (scope, subject, period)) for scope, subject in states[a].limits
                       for period in (day_key(now), month_key(now)))
    return sorted(out)


class EventStore:
    """Appends events and keeps inline state exact, batch by batch."""

    def __init__(self, engine: AsyncEngine, clock: Clock, card: Callable[[], RateCard], *,
                 keep_connections: int = 2) -> None:
        self.engine = engine
        self.clock = clock
        self._card = card
        #: Connections kept checked out between batches (one per writer loop), with their asyncpg
        #: connection and when a batch last finished on it: checking one out of SQLAlchemy's pool
        #: and back in for every batch cost ~18 % of a lone charge's CPU, and reaching its asyncpg
        #: connection another ~4 %.
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
                await _release(conn, pg)

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
                    await _release(conn, pg)
                    raise
                except Exception:
                    await _release(conn, pg)
                    continue
                if len(self._idle) < self._keep:
                    self._idle.append(entry)
                else:
                    await conn.close()

    # ---- the write path --------------------------------------------------------------------

    async def run_batch(self, commands: Sequence[c.Command]) -> list[Result]:
        """Decide and commit ``commands`` in one transaction; one result per command, in order."""
        if self._idle:
            conn, pg, _ = self._idle.pop()
        else:
            conn = await self.engine.connect()
            pg = (await conn.get_raw_connection()).driver_connection
        healthy = False
        try:
            results = await self._batch(conn, pg, commands)
            healthy = True
            return results
        finally:
            if healthy and not conn.invalidated and len(self._idle) < self._keep:
                self._idle.append((conn, pg, time.monotonic()))
                if self._tidying is None or self._tidying.done():
                    self._tidying = asyncio.create_task(self._tidy())
            else:
                await _release(conn, pg)
                if not healthy:
                    # A failed batch may mean the server restarted: the kept connections would
                    # fail the retries too (and poison the pool if handed back), so they are
                    # dropped and the next batches start on fresh ones.
                    await self.close(discard=True)

    async def _batch(self, conn: AsyncConnection, pg: Pg, commands: Sequence[c.Command]) -> list[Result]:
        # The batch runs on the asyncpg connection itself: SQLAlchemy's per-statement
        # machinery cost more client CPU than PostgreSQL spent on the statements.
        try:
            results, replays, writes = await self._run(pg, commands)
            # The write goes with the COMMIT when the batch appends events (its first one tells
            # whether it committed), reads nothing afterwards and is small (see _INLINE_MAX).
            first_event = writes.first_event if writes is not None and not replays else None
            if writes is not None and (first_event is None or writes.size() > _INLINE_MAX):
                first_event = None
                await writes.run(pg)
        except BaseException:
            await _abandon(conn, pg)
            raise
        if writes is not None and first_event is not None:
            await self._write_and_commit(conn, pg, writes, first_event)
            return results  # type: ignore[return-value]
        # The next batch's transaction is opened in this round trip, except when this one still
        # reads (the replays, below, on SQLAlchemy's own transaction).
        chained = not replays
        try:
            status = await pg.execute(_COMMIT_AND_BEGIN if chained else "COMMIT")
        except Exception as exc:
            opened_after = chained and not pg.is_closed() and pg.is_in_transaction()
            await _abandon(conn, pg)
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
            found = await read_ranges(conn, list(replays.values()))
            # That read began SQLAlchemy's own transaction: end it before the next raw BEGIN.
            await conn.rollback()
            for i, (account_id, first, last) in replays.items():
                results[i] = Outcome(tuple(found[(account_id, first, last)]), True)
        return results  # type: ignore[return-value]

    async def _write_and_commit(self, conn: AsyncConnection, pg: Pg, writes: _Writes,
                                first_event: tuple[str, int, UUID]) -> None:
        """Write, commit and open the next batch's transaction in one round trip.

        The write goes as ``EXECUTE`` of a statement prepared on this connection (its generic
        plan, as when asyncpg runs it) with its parameters as literals, in one simple-protocol
        message with the COMMIT: the extended protocol carries one statement per round trip.
        If the message fails, the batch committed exactly when its first event is in the log,
        which this connection reads at once: no other check tells a failed write from a failure
        after the COMMIT, and retrying a batch that committed would charge twice.
        """
        sql, names = _positional(writes.statement())
        try:
            name = await self._prepared(pg, sql)
            script = f"EXECUTE {name}({', '.join(_literal(writes.params[n]) for n in names)}); "
        except BaseException:
            await _abandon(conn, pg)
            raise
        try:
            await pg.execute(script + _COMMIT_AND_BEGIN)
            return
        except Exception as exc:
            failure = exc
        self._statements.pop(pg, None)  # one may be gone (a reset connection): prepare them again
        account_id, version, event_id = first_event
        try:
            await _abandon(conn, pg)  # the failed batch, or the next one's transaction
            if pg.is_closed():
                raise failure
            landed = await pg.fetchval("SELECT event_id FROM events WHERE account_id = $1 AND version = $2",
                                       account_id, version)
        except Exception as exc:
            # The commit may or may not have landed: never retry blindly, the caller retries
            # with the same idempotency key and gets the first result if it did.
            raise OutcomeUnknown(f"commit failed in flight: {failure}") from exc
        if landed != event_id:
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

    async def _run(
        self, pg: Pg, commands: Sequence[c.Command]
    ) -> tuple[list[Result | None], dict[int, tuple[str, int, int]], _Writes | None]:
        """Open the batch's transaction on ``pg`` and decide; the caller writes and commits."""
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
            await pg.execute(_BEGIN)
        loaded = await self._load(pg, commands, account_ids, now, card, lock=True)
        while True:
            try:
                return self._decide(commands, loaded, now, card)
            except CountersNotLoaded as asked:
                # A debit near MAX_SPEND_UCR, or a gate the load did not foresee, reads spend
                # counters: load that account's (still under its lock) and decide the batch again.
                await self._load_counters(pg, loaded, commands, {asked.account_id}, now)

    def _decide(
        self, commands: Sequence[c.Command], loaded: _Loaded, now: datetime, card: RateCard,
    ) -> tuple[list[Result | None], dict[int, tuple[str, int, int]], _Writes | None]:
        """Decide every command of the batch in order on ``loaded`` (left unchanged)."""
        states = dict(loaded.states)
        original = dict(states)
        coupon_stock = dict(loaded.coupon_stock)
        results: list[Result | None] = [None] * len(commands)
        replays: dict[int, tuple[str, int, int]] = {}
        batch_keys: dict[tuple[str, str], tuple[bytes, int]] = {}
        new_events: list[_NewEvent] = []
        heads: dict[str, tuple[int, bytes]] = {}
        new_keys: list[tuple[str, str, bytes, int, int]] = []
        redeemed: list[tuple[str, str, UUID]] = []
        api_keys = _ApiKeyWrites()

        ctx = Context(now=now, card=card, new_id=new_uuid, coupon_stock=coupon_stock)
        for i, cmd in enumerate(commands):
            acct = cmd.account_id
            key = cmd.idempotency_key
            fp = b""
            if key is not None:
                fp = cmd.fingerprint()
                prior = loaded.keys.get((acct, key))
                if prior is not None:
                    if prior[0] != fp:
                        results[i] = IdempotencyConflict(f"idempotency key {key!r} was used for a different request")
                    else:
                        replays[i] = (acct, prior[1], prior[2])
                    continue
                earlier = batch_keys.get((acct, key))
                if earlier is not None:
                    first_result = results[earlier[1]]
                    if earlier[0] != fp:
                        results[i] = IdempotencyConflict(f"idempotency key {key!r} was used for a different request")
                    elif isinstance(first_result, Outcome):
                        results[i] = Outcome(first_result.events, True)
                    continue
            state = states.get(acct) or AccountState(account_id=acct)
            try:
                events, after = execute(state, cmd, ctx)
            except LedgerError as err:
                results[i] = err
                continue
            first_version, prev_hash = heads.get(acct) or (state.version, state.last_hash or GENESIS)
            version = first_version
            for e in events:
                version += 1
                data_json = canonical_json(event_data(e))
                prev_hash = _hash(prev_hash, version, e, data_json)
                new_events.append((e, version, prev_hash, data_json))
                # Exact type checks: isinstance on pydantic models goes through ABCMeta.
                if type(e) is CouponApplied:
                    stock = coupon_stock.get(e.code)
                    coupon_stock[e.code] = None if stock is None else stock - 1
                    redeemed.append((acct, e.code, e.event_id))
                elif type(e) is ApiKeyCreated or type(e) is ApiKeyRevoked:
                    api_keys.add(cmd, e, now)
            # The chain's head is kept aside and folded into the state once per account, below.
            states[acct] = after
            heads[acct] = (version, prev_hash)
            results[i] = Outcome(tuple(events))
            if key is not None:
                batch_keys[(acct, key)] = (fp, i)
                new_keys.append((acct, key, fp, first_version + 1, version))
        for acct, (version, head) in heads.items():
            states[acct] = replace(states[acct], version=version, last_hash=head)

        # A keyed command that appended nothing (e.g. nothing was due to expire) still keeps its key.
        writes = None
        if new_events or new_keys:
            writes = _collect(now, original, states, new_events, new_keys, redeemed, api_keys)
        return results, replays, writes

    async def snapshot(self, conn: AsyncConnection, command: c.Command, now: datetime,
                       card: RateCard) -> AccountState:
        """The state ``command`` would be decided on, read without locks (for dry runs)."""
        pg: Pg = (await conn.get_raw_connection()).driver_connection
        loaded = await self._load(pg, [command], [command.account_id], now, card, lock=False)
        await self._load_counters(pg, loaded, [command], {command.account_id}, now)
        state = loaded.states.get(command.account_id)
        if state is None:
            raise UnknownAccount(command.account_id)
        return state

    async def _load(
        self, pg: Pg, commands: Sequence[c.Command], account_ids: list[str], now: datetime,
        card: RateCard, *, lock: bool,
    ) -> _Loaded:
        out = _Loaded()
        # The accounts' locks (``lock``), then the accounts, their live grants, their limits and
        # the batch's idempotency keys, in one round trip (migration 0009's function): grants,
        # limits and keys come back as arrays of rows, decoded by asyncpg in binary. The keys are
        # probed by (account, key) pair, one index lookup each. Limits are read for every account
        # (an index probe, nearly always finding none) rather than in a second round trip only
        # when a command names an agent or a member.
        keyed = [(cmd.account_id, cmd.idempotency_key) for cmd in commands if cmd.idempotency_key]
        rows = await pg.fetch("SELECT * FROM credits_lock_and_load($1, $2, $3, $4)",
                              [lock_key(a) for a in account_ids] if lock else [], account_ids,
                              [a for a, _ in keyed], [k for _, k in keyed])
        account_rows = {r["account_id"]: r for r in rows}
        budgets = {a: Budget(**r["settings"]["budget"]) if "budget" in r["settings"] else Budget()
                   for a, r in account_rows.items()}
        grants: dict[str, dict[UUID, Grant]] = defaultdict(dict)
        limits: dict[str, dict[tuple[str, str], Limit]] = defaultdict(dict)
        for a, r in account_rows.items():
            # Row fields in ``Grant``'s own order: grant_id, source, original, remaining, expiry, granted.
            grants[a] = {g[0]: Grant(*g) for g in r["grants"]}
            if r["limits"]:
                limits[a] = {(scope, subject): Limit(run, day, month)
                             for scope, subject, run, day, month in r["limits"]}
            for key, request_hash, first, last in r["keys"] or ():
                out.keys[(a, key)] = (bytes(request_hash), first, last)
        # Commands by exact type, found once: isinstance on pydantic models goes through ABCMeta
        # and was a visible share of the write path when every lookup below rescanned the batch.
        by_type: dict[type[c.Command], list[Any]] = defaultdict(list)
        for cmd in commands:
            by_type[type(cmd)].append(cmd)

        def of(*types: type[c.Command]) -> list[Any]:
            return [cmd for t in types for cmd in by_type.get(t, ())]

        # A refund names its purchase by ledger entry id: load the entry and its grant (which may
        # be spent down to zero, so not among the live grants).
        purchases: dict[str, dict[UUID, Purchase]] = defaultdict(dict)
        purchase_ids = [(cmd.account_id, cmd.purchase_id) for cmd in of(c.IssueRefund)
                        if cmd.purchase_id is not None and cmd.account_id in account_rows]
        if purchase_ids:
            for g in await _fetch(pg, (
                "SELECT e.account_id, e.event_id, e.occurred_at, g.grant_id, g.source, g.original_ucr,"
                " g.remaining_ucr, g.expires_at, g.granted_at"
                " FROM unnest(CAST(:pa AS text[]), CAST(:pe AS uuid[])) AS p(a, e2)"
                " JOIN events e ON e.account_id = p.a AND e.event_id = p.e2 AND e.type = 'CreditsPurchased'"
                " JOIN grants g ON g.account_id = e.account_id AND g.grant_id = CAST(e.data ->> 'grant_id' AS uuid)"),
                {"pa": [a for a, _ in purchase_ids], "pe": [e for _, e in purchase_ids]},
            ):
                grants[g["account_id"]][g["grant_id"]] = Grant(
                    g["grant_id"], g["source"], g["original_ucr"], g["remaining_ucr"], g["expires_at"],
                    g["granted_at"])
                purchases[g["account_id"]][g["event_id"]] = Purchase(g["event_id"], g["grant_id"], g["occurred_at"])

        reservations: dict[str, dict[UUID, Reservation]] = defaultdict(dict)
        res_ids = [(cmd.account_id, cmd.reservation_id) for cmd in of(c.Settle, c.Release)]
        expiring = [cmd.account_id for cmd in of(c.ExpireReservations)]
        if res_ids or expiring:
            for rr in (await _fetch(pg, (
                "SELECT r.account_id, r.reservation_id, r.operation, r.held_ucr, r.status, r.expires_at,"
                " r.created_at FROM reservations r"
                " JOIN unnest(CAST(:a AS text[]), CAST(:r AS uuid[])) AS q(a, r2)"
                " ON r.account_id = q.a AND r.reservation_id = q.r2"
                " UNION SELECT account_id, reservation_id, operation, held_ucr, status, expires_at,"
                " created_at FROM reservations WHERE account_id = ANY(:e) AND status = 'held'"
                " AND expires_at <= :now"),
                {"a": [a for a, _ in res_ids], "r": [r for _, r in res_ids], "e": expiring, "now": now},
            )):
                reservations[rr["account_id"]][rr["reservation_id"]] = Reservation(
                    rr["reservation_id"], rr["operation"], rr["held_ucr"], rr["status"], rr["expires_at"],
                    rr["created_at"])

        deployments: dict[str, dict[str, Deployment]] = defaultdict(dict)
        dep_ids = [(cmd.account_id, cmd.deployment_id) for cmd in of(
            c.StartDeployment, c.ChargeDeploymentHour, c.StopDeployment, c.PauseDeployment, c.ResumeDeployment)]
        # Debt pauses and the deployment-cost alert look at every running deployment.
        debtors = [cmd.account_id for cmd in of(c.PauseForDebt, c.CheckAlerts, c.RaiseAlert)]
        if dep_ids or debtors:
            for dr in (await _fetch(pg, (
                "SELECT d.* FROM deployments d JOIN unnest(CAST(:a AS text[]), CAST(:d AS text[])) AS q(a, d2)"
                " ON d.account_id = q.a AND d.deployment_id = q.d2"
                " UNION SELECT * FROM deployments WHERE account_id = ANY(:debtors) AND status = 'running'"),
                {"a": [a for a, _ in dep_ids], "d": [d for _, d in dep_ids], "debtors": debtors},
            )):
                deployments[dr["account_id"]][dr["deployment_id"]] = Deployment(
                    dr["deployment_id"], dr["instance_type"], dr["hourly_ucr"], dr["status"], dr["hours_charged"],
                    dr["credits_ucr"], dr["segment_started_at"], timedelta(microseconds=dr["used_us"]),
                    dr["paused_reason"], dr["started_at"])

        redeemed: dict[str, set[str]] = defaultdict(set)
        coupon_cmds = of(c.RedeemCoupon)
        if coupon_cmds:
            # Every code the accounts redeemed (a handful each), compared as ``coupon_code`` does:
            # a redemption stored under another spelling still counts.
            for cr2 in (await _fetch(pg, "SELECT account_id, code FROM coupon_redemptions WHERE account_id = ANY(:a)",
                                     {"a": sorted({cmd.account_id for cmd in coupon_cmds})})):
                redeemed[cr2["account_id"]].add(coupon_code(cr2["code"]))
            # The card defines coupons; their shared redemption count lives in ``coupons``, under
            # the card's spelling of the code.
            found = {cmd.code: card.coupon(cmd.code) for cmd in coupon_cmds}
            card_codes = sorted({cp.code for cp in found.values() if cp is not None})
            await _fetch(pg, (
                "INSERT INTO coupons (code, max_redemptions) SELECT * FROM unnest(CAST(:c AS text[]),"
                " CAST(:m AS int[])) ON CONFLICT (code) DO UPDATE SET max_redemptions = excluded.max_redemptions"),
                {"c": card_codes, "m": [card.coupons[k].max_redemptions for k in card_codes]})
            # The redemption count is global to the coupon: lock its row (after every account
            # lock, in code order) so two accounts cannot both take the last redemption.
            for cp in (await _fetch(pg, (
                "SELECT code, max_redemptions, redeemed_count FROM coupons WHERE code = ANY(:c)"
                " ORDER BY code FOR UPDATE"), {"c": card_codes})):
                out.coupon_stock[cp["code"]] = (None if cp["max_redemptions"] is None
                                             else cp["max_redemptions"] - cp["redeemed_count"])

        for a, r in account_rows.items():
            out.states[a] = AccountState(
                account_id=a, exists=True, name=r["name"], plan=r["plan"], status=r["status"], version=r["version"],
                last_hash=bytes(r["last_hash"]), opened_at=r["opened_at"], debt_ucr=r["debt_ucr"],
                reserved_ucr=r["reserved_ucr"], allowance_cycle=r["settings"].get("allowance_cycle", -1),
                spent_ucr=r["spent_ucr"], budget=budgets[a], grants=grants[a], limits=limits[a], counters=None,
                reservations=reservations[a], deployments=deployments[a],
                coupons_redeemed=frozenset(redeemed[a]), purchases=purchases[a])
        # Spend counters, for the accounts whose budget, limits or alert checks read them (a debit
        # needs them only near MAX_SPEND_UCR: ``ledger.decide._check_spend_range``).
        gated = {a for a, st in out.states.items() if st.budget.monthly_limit_ucr is not None or st.limits}
        gated.update(cmd.account_id for cmd in of(c.CheckAlerts, c.RaiseAlert))
        await self._load_counters(pg, out, commands, gated, now)
        return out

    async def _load_counters(self, pg: Pg, loaded: _Loaded, commands: Sequence[c.Command], accounts: set[str],
                             now: datetime) -> None:
        """Load into ``loaded`` every spend counter the batch's commands on ``accounts`` may read."""
        accounts = {a for a in accounts if a in loaded.states}
        keys = _counter_keys(commands, loaded.states, accounts, now)
        found: dict[str, dict[CounterKey, int]] = defaultdict(dict)
        if keys:
            for cr in (await _fetch(pg, (
                "SELECT s.account_id, s.scope, s.subject, s.period, s.spent_ucr FROM spend_counters s"
                " JOIN unnest(CAST(:a AS text[]), CAST(:s AS text[]), CAST(:j AS text[]), CAST(:p AS text[]))"
                " AS q(a, s2, j, p) ON s.account_id = q.a AND s.scope = q.s2 AND s.subject = q.j"
                " AND s.period = q.p"),
                {"a": [a for a, _ in keys], "s": [k[0] for _, k in keys],
                 "j": [k[1] for _, k in keys], "p": [k[2] for _, k in keys]},
            )):
                found[cr["account_id"]][(cr["scope"], cr["subject"], cr["period"])] = cr["spent_ucr"]
        for a in accounts:
            loaded.states[a] = replace(loaded.states[a], counters=found[a])


_NO_ATTR = c.Charge.model_fields["attribution"].default
#: A deployment's running time used is stored as whole microseconds (``deployments.used_us``).
_MICROSECOND = timedelta(microseconds=1)


#: An event on its way to the table: the event, its version, its chained hash, its data as JSON.
_NewEvent = tuple[Event, int, bytes, str]


def _hash(prev: bytes, version: int, e: Event, data_json: str) -> bytes:
    return event_hash(
        prev, account_id=e.account_id, version=version, event_id=e.event_id, type_=e.type,
        schema_version=e.schema_version, idempotency_key=e.idempotency_key, amount_ucr=e.amount_ucr,
        balance_after_ucr=e.balance_after_ucr, occurred_at=e.occurred_at, recorded_at=e.recorded_at,
        data_json=data_json,
    )


def _settings(s: AccountState) -> str:
    return _settings_json(s.allowance_cycle, s.budget)


@lru_cache(maxsize=1024)
def _settings_json(allowance_cycle: int, b: Budget) -> str:
    # Cached: nearly every account shares a handful of (cycle, budget) pairs, and every batch
    # rewrites the settings of each account it touched.
    return canonical_json({"allowance_cycle": allowance_cycle, "budget": {
        "monthly_limit_ucr": b.monthly_limit_ucr, "warn_pct": b.warn_pct,
        "critical_pct": b.critical_pct, "hard_stop": b.hard_stop}})


@lru_cache(maxsize=512)
def _renamed(sql: str, n: int) -> str:
    """``sql`` with each parameter prefixed ``w{n}_``, so the CTEs of one statement never collide."""
    return _PARAM.sub(lambda m: f":w{n}_{m.group(1)}", sql)


#: How a column of a ``_rows`` parameter is read back in SQL, by PostgreSQL type.
_JSON_READ = {"jsonb": "r->{i}", "bytea": "decode(r->>{i}, 'hex')"}


@lru_cache(maxsize=64)
def _rows_from(*columns: str) -> str:
    """``SELECT`` the rows of a ``_rows`` parameter (``:rows``): one output column per ``name type``.

    A batch's rows travel as one JSON array of arrays. asyncpg encodes an array parameter element
    by element, with several ``collections.abc`` checks each: 11-15 µs of client CPU per event row,
    against ~4 µs for the same row built into JSON by orjson and taken apart by PostgreSQL.
    """
    reads = []
    for i, column in enumerate(columns):
        name, type_ = column.split()
        reads.append(f"{_JSON_READ.get(type_, 'CAST(r->>{i} AS ' + type_ + ')').format(i=i)} AS {name}")
    return f"SELECT {', '.join(reads)} FROM jsonb_array_elements(CAST(CAST(:rows AS text) AS jsonb)) AS r"


def _json_default(value: Any) -> Any:
    """What orjson leaves to us: bytes (as hex, for ``decode(..., 'hex')``) and asyncpg's UUIDs."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} into a row")


def _rows(rows: Iterable[tuple[Any, ...]]) -> str:
    """Rows as the JSON text ``_rows_from`` reads; ``orjson.Fragment`` holds pre-serialised JSON."""
    return orjson.dumps(list(rows), default=_json_default, option=orjson.OPT_NAIVE_UTC).decode()


def _literal(value: Any) -> str:
    """``value`` as an SQL literal for ``EXECUTE``. ``E'…'`` reads backslashes and quotes the same
    way whatever ``standard_conforming_strings`` says; both are escaped, so the text is exact."""
    if value is None:
        return "NULL"
    if isinstance(value, datetime):  # naive means UTC, as asyncpg and ``_rows`` take it
        value = value.isoformat() if value.tzinfo is not None else value.isoformat() + "+00:00"
    elif type(value) is int:
        return str(value)
    if not isinstance(value, str):
        raise TypeError(f"no literal for {type(value).__name__}")
    if "\x00" in value:  # PostgreSQL's text cannot hold it, and the message would end there
        raise ValueError("text with a NUL character")
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class _Writes:
    """Statements collected for one round trip: each becomes a data-modifying CTE."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.params: dict[str, Any] = {}
        #: The batch's first new event (account, version, id): it is in the log iff the batch committed.
        self.first_event: tuple[str, int, UUID] | None = None

    def add(self, sql: str, params: dict[str, Any]) -> None:
        n = len(self.parts)
        self.parts.append(_renamed(sql, n))
        self.params.update({f"w{n}_{k}": v for k, v in params.items()})

    def size(self) -> int:
        """The characters of the statement's text parameters (the rows' JSON)."""
        return sum(len(v) for v in self.params.values() if type(v) is str)

    def statement(self) -> str:
        ctes = ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(self.parts))
        return f"WITH {ctes} SELECT 1"

    async def run(self, pg: Pg) -> None:
        if self.parts:
            await _fetch(pg, self.statement(), self.params)


class _ApiKeyWrites:
    """``api_keys`` rows created or revoked by a batch, written with its events."""

    def __init__(self) -> None:
        self.created: list[tuple[str, str, str, str, str, bytes, datetime]] = []
        self.revoked: list[tuple[str, str]] = []
        self.now: datetime | None = None

    def add(self, cmd: c.Command, e: ApiKeyCreated | ApiKeyRevoked, now: datetime) -> None:
        self.now = now
        if isinstance(e, ApiKeyCreated):
            assert isinstance(cmd, c.CreateApiKey)
            self.created.append((e.key_id, e.account_id, e.role, e.name, e.prefix,
                                 bytes.fromhex(cmd.secret_sha256), now))
        else:
            self.revoked.append((e.account_id, e.key_id))

    def write(self, w: _Writes) -> None:
        if self.created:
            w.add(
                "INSERT INTO api_keys (key_id, account_id, role, name, prefix, secret_sha256, created_at) "
                + _rows_from("ki text", "ka text", "kr text", "kn text", "kp text", "ks bytea", "kt timestamptz"),
                {"rows": _rows(self.created)})
        if self.revoked:
            # Scoped to the account, so a command can only ever revoke its own account's key.
            w.add(
                "UPDATE api_keys SET revoked_at = :rnow FROM (" + _rows_from("a text", "k text") + ") AS r"
                " WHERE api_keys.key_id = r.k AND api_keys.account_id = r.a AND api_keys.revoked_at IS NULL",
                {"rnow": self.now, "rows": _rows(self.revoked)})


def _collect(
    now: datetime,
    original: dict[str, AccountState],
    states: dict[str, AccountState],
    new_events: list[_NewEvent],
    new_keys: list[tuple[str, str, bytes, int, int]],
    redeemed: list[tuple[str, str, UUID]],
    api_keys: _ApiKeyWrites,
) -> _Writes:
    """One batch's events and the inline state they changed, as one statement.

    Each table gets one multi-row statement; they run together as data-modifying CTEs of a
    single statement (they touch different rows, so their order does not matter).
    """
    w = _Writes()
    if new_events:
        e, version, _, _ = new_events[0]
        w.first_event = (e.account_id, version, e.event_id)
        _insert_events(w, new_events)
    _write_state(w, now, original, states, new_events, new_keys, redeemed)
    api_keys.write(w)
    return w


def _insert_events(w: _Writes, new_events: list[_NewEvent]) -> None:
    w.add(
        "INSERT INTO events (account_id, version, event_id, type, schema_version, data, idempotency_key,"
        " amount_ucr, balance_after_ucr, occurred_at, recorded_at, hash) "
        + _rows_from("a text", "v bigint", "id uuid", "t text", "sv smallint", "d jsonb", "k text",
                     "amt bigint", "bal bigint", "occ timestamptz", "rec timestamptz", "h bytea"),
        {"rows": _rows((e.account_id, v, e.event_id, e.type, e.schema_version, orjson.Fragment(data_json),
                        e.idempotency_key, e.amount_ucr, e.balance_after_ucr, e.occurred_at, e.recorded_at, h)
                       for e, v, h, data_json in new_events)})


def _write_state(
    w: _Writes,
    now: datetime,
    original: dict[str, AccountState],
    states: dict[str, AccountState],
    new_events: list[_NewEvent],
    new_keys: list[tuple[str, str, bytes, int, int]],
    redeemed: list[tuple[str, str, UUID]],
) -> None:
    """Update the inline state the batch changed, then store its idempotency keys."""
    changed = [s for a, s in states.items() if s.version != (original[a].version if a in original else 0)]
    opened = [s for s in changed if s.account_id not in original]
    updated = [s for s in changed if s.account_id in original]
    if opened:
        w.add(
            "INSERT INTO accounts (account_id, name, plan, status, balance_ucr, debt_ucr, reserved_ucr,"
            " spent_ucr, version, last_hash, settings, opened_at, updated_at)"
            " SELECT o.*, CAST(:now AS timestamptz) FROM ("
            + _rows_from("a text", "n text", "p text", "st text", "b bigint", "d bigint", "r bigint",
                         "sp bigint", "v bigint", "h bytea", "s jsonb", "o timestamptz") + ") AS o",
            {"now": now, "rows": _rows((s.account_id, s.name, s.plan, s.status, s.balance_ucr, s.debt_ucr,
                                        s.reserved_ucr, s.spent_ucr, s.version, s.last_hash,
                                        orjson.Fragment(_settings(s)), s.opened_at) for s in opened)})
    if updated:
        w.add(
            "UPDATE accounts SET plan = u.p, status = u.st, balance_ucr = u.b, debt_ucr = u.d,"
            " reserved_ucr = u.r, spent_ucr = u.sp, version = u.v, last_hash = u.h, settings = u.s,"
            " updated_at = :now FROM ("
            + _rows_from("a text", "p text", "st text", "b bigint", "d bigint", "r bigint", "sp bigint",
                         "v bigint", "h bytea", "s jsonb") + ") AS u WHERE accounts.account_id = u.a",
            {"now": now, "rows": _rows((s.account_id, s.plan, s.status, s.balance_ucr, s.debt_ucr, s.reserved_ucr,
                                        s.spent_ucr, s.version, s.last_hash, orjson.Fragment(_settings(s)))
                                       for s in updated)})

    grant_rows, res_rows, dep_rows, limit_rows = [], [], [], []
    for s in changed:
        before = original.get(s.account_id) or AccountState(account_id=s.account_id)
        grant_rows += [(s.account_id, g.grant_id, g.source, g.original_ucr, g.remaining_ucr, g.expires_at,
                        g.granted_at) for gid, g in s.grants.items() if before.grants.get(gid) != g]
        res_rows += [(s.account_id, r.reservation_id, r.operation, r.held_ucr, r.status, r.expires_at,
                      r.created_at) for rid, r in s.reservations.items() if before.reservations.get(rid) != r]
        dep_rows += [(s.account_id, d.deployment_id, d.instance_type, d.hourly_ucr, d.status, d.hours_charged,
                      d.credits_ucr, d.segment_started_at, d.used // _MICROSECOND, d.paused_reason, d.started_at)
                     for did, d in s.deployments.items() if before.deployments.get(did) != d]
        limit_rows += [(s.account_id, k[0], k[1], lim.per_run_ucr, lim.per_day_ucr, lim.per_month_ucr)
                       for k, lim in s.limits.items() if before.limits.get(k) != lim]
    if grant_rows:
        w.add(
            "INSERT INTO grants (account_id, grant_id, source, original_ucr, remaining_ucr, expires_at,"
            " granted_at) "
            + _rows_from("a text", "g uuid", "s text", "o bigint", "r bigint", "e timestamptz",
                         "t timestamptz")
            + " ON CONFLICT (account_id, grant_id) DO UPDATE SET remaining_ucr = excluded.remaining_ucr",
            {"rows": _rows(grant_rows)})
    if res_rows:
        w.add(
            "INSERT INTO reservations (account_id, reservation_id, operation, held_ucr, status, expires_at,"
            " created_at) "
            + _rows_from("a text", "r uuid", "o text", "h bigint", "s text", "e timestamptz",
                         "c timestamptz")
            + " ON CONFLICT (account_id, reservation_id) DO UPDATE SET status = excluded.status",
            {"rows": _rows(res_rows)})
    if dep_rows:
        w.add(
            "INSERT INTO deployments (account_id, deployment_id, instance_type, hourly_ucr, status,"
            " hours_charged, credits_ucr, segment_started_at, used_us, paused_reason, started_at) "
            + _rows_from("a text", "d text", "i text", "h bigint", "s text", "n bigint", "c bigint",
                         "ss timestamptz", "u bigint", "pr text", "st timestamptz")
            + " ON CONFLICT (account_id, deployment_id) DO UPDATE SET status = excluded.status,"
            " hours_charged = excluded.hours_charged, credits_ucr = excluded.credits_ucr,"
            " segment_started_at = excluded.segment_started_at,"
            " used_us = excluded.used_us, paused_reason = excluded.paused_reason",
            {"rows": _rows(dep_rows)})
    if limit_rows:
        w.add(
            "INSERT INTO limits (account_id, scope, subject, per_run_ucr, per_day_ucr, per_month_ucr) "
            + _rows_from("a text", "s text", "j text", "r bigint", "d bigint", "m bigint")
            + " ON CONFLICT (account_id, scope, subject) DO UPDATE SET per_run_ucr = excluded.per_run_ucr,"
            " per_day_ucr = excluded.per_day_ucr, per_month_ucr = excluded.per_month_ucr",
            {"rows": _rows(limit_rows)})

    # Spend counters are written as deltas: only the keys a batch gates on are ever loaded.
    deltas: dict[tuple[str, str, str, str], int] = defaultdict(int)
    for e, _, _, _ in new_events:
        if isinstance(e, UsageMetered):
            for k in spend_keys(e.attribution, e.occurred_at):
                deltas[(e.account_id, *k)] += e.cost_ucr
    if deltas:
        w.add(
            "INSERT INTO spend_counters (account_id, scope, subject, period, spent_ucr) "
            + _rows_from("a text", "s text", "j text", "p text", "v bigint")
            + " ON CONFLICT (account_id, scope, subject, period)"
            " DO UPDATE SET spent_ucr = spend_counters.spent_ucr + excluded.spent_ucr",
            {"rows": _rows((*k, v) for k, v in deltas.items())})

    if new_keys:
        w.add(
            "INSERT INTO idempotency_keys (account_id, key, request_hash, first_version, last_version,"
            " created_at) SELECT k.*, CAST(:now AS timestamptz) FROM ("
            + _rows_from("a text", "k text", "h bytea", "f bigint", "l bigint") + ") AS k",
            {"now": now, "rows": _rows(new_keys)})

    if redeemed:
        w.add(
            "INSERT INTO coupon_redemptions (account_id, code, event_id, redeemed_at)"
            " SELECT r.*, CAST(:now AS timestamptz) FROM (" + _rows_from("a text", "c text", "e uuid") + ") AS r",
            {"now": now, "rows": _rows(redeemed)})
        counts: dict[str, int] = defaultdict(int)
        for _, code, _ in redeemed:
            counts[code] += 1
        w.add(
            "UPDATE coupons SET redeemed_count = redeemed_count + q.n FROM ("
            + _rows_from("c text", "n int") + ") AS q WHERE coupons.code = q.c",
            {"rows": _rows(counts.items())})


EVENT_FIELDS = ("position", "account_id", "version", "event_id", "type", "schema_version", "data",
                "idempotency_key", "amount_ucr", "balance_after_ucr", "occurred_at", "recorded_at")
#: What a query selects to rebuild events with ``row_to_event``.
EVENT_COLUMNS = ", ".join(EVENT_FIELDS)


def row_to_event(r: Any) -> Event:
    """An event from an ``events`` row (any query selecting ``EVENT_COLUMNS``)."""
    return event_from_row(
        type_=r.type, schema_version=r.schema_version, data=r.data,
        envelope={"event_id": r.event_id, "account_id": r.account_id, "occurred_at": r.occurred_at,
                  "recorded_at": r.recorded_at, "idempotency_key": r.idempotency_key,
                  "amount_ucr": r.amount_ucr, "balance_after_ucr": r.balance_after_ucr},
    )


async def read_versions(conn: AsyncConnection, account_id: str, first: int, last: int) -> list[Event]:
    """Events ``first..last`` of one account, in order."""
    return (await read_ranges(conn, [(account_id, first, last)]))[(account_id, first, last)]


async def read_ranges(
    conn: AsyncConnection, ranges: list[tuple[str, int, int]]
) -> dict[tuple[str, int, int], list[Event]]:
    """Events of several ``(account, first, last)`` version ranges in one query, each in order."""
    rows = (await conn.execute(_sql(
        f"SELECT q.a AS q_a, q.f AS q_f, q.l AS q_l, {', '.join('e.' + f for f in EVENT_FIELDS)}"
        " FROM unnest(CAST(:a AS text[]), CAST(:f AS bigint[]), CAST(:l AS bigint[])) AS q(a, f, l)"
        " JOIN events e ON e.account_id = q.a AND e.version BETWEEN q.f AND q.l ORDER BY e.account_id, e.version"),
        {"a": [r[0] for r in ranges], "f": [r[1] for r in ranges], "l": [r[2] for r in ranges]})).all()
    out: dict[tuple[str, int, int], list[Event]] = {r: [] for r in ranges}
    for row in rows:
        out[(row.q_a, row.q_f, row.q_l)].append(row_to_event(row))
    return out
