"""The batch planner: a batch of commands decided on loaded state, as results and a write plan.

Pure: no I/O. In: what the store loaded for the batch (``Loaded``) and the commands, in arrival
order. Out: one result per command and the rows to write (``WritePlan``), or ``NeedsCounters``
when a decision read spend counters the load skipped (the store loads them and plans again from
the same ``Loaded``, which planning never changes). It holds the decide loop, the hash chain
and applies the idempotency decisions (``ledger.idempotency``); the store holds the locks, the
reads and the writes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from uuid import UUID

import uuid_utils

from ledger import commands as c
from ledger.chain import GENESIS, canonical_json, event_hash
from ledger.decide import Context, decide
from ledger.errors import LedgerError
from ledger.events import ApiKeyCreated, ApiKeyRevoked, CouponApplied, Event, event_data
from ledger.idempotency import KeyBook, ReplayInBatch, ReplayStored, StoredKey
from ledger.rates import RateCard
from ledger.state import AccountState, CountersNotLoaded


def new_uuid() -> UUID:
    """A UUIDv7: time-ordered, so ids sort roughly by creation."""
    return UUID(bytes=uuid_utils.uuid7().bytes)


@dataclass(frozen=True)
class Outcome:
    """What a command produced: its events (the first result again when ``replayed``)."""

    events: tuple[Event, ...]
    replayed: bool = False


Result = Outcome | LedgerError

@dataclass
class Loaded:
    """Everything read for one batch, per account, before deciding."""

    states: dict[str, AccountState] = field(default_factory=dict)
    keys: dict[tuple[str, str], StoredKey] = field(default_factory=dict)
    coupon_stock: dict[str, int | None] = field(default_factory=dict)


#: An event on its way to the table: the event, its version, its chained hash, its data as JSON.
NewEvent = tuple[Event, int, bytes, str]


@dataclass
class WritePlan:
    """What one batch writes: its events and every row of inline state they changed."""

    now: datetime
    #: The states as loaded, and after the batch: a row is written where the two differ.
    original: dict[str, AccountState]
    states: dict[str, AccountState]
    events: list[NewEvent] = field(default_factory=list)
    #: New idempotency keys: (account, key, fingerprint, first version, last version).
    keys: list[tuple[str, str, bytes, int, int]] = field(default_factory=list)
    #: Coupon redemptions: (account, code, event id).
    redeemed: list[tuple[str, str, UUID]] = field(default_factory=list)
    #: ``api_keys`` rows: (key id, account, role, name, prefix, secret sha256, created at).
    api_keys_created: list[tuple[str, str, str, str, str, bytes, datetime]] = field(default_factory=list)
    #: ``api_keys`` revoked: (account, key id).
    api_keys_revoked: list[tuple[str, str]] = field(default_factory=list)

    @property
    def first_event(self) -> tuple[str, int, UUID] | None:
        """The batch's first new event (account, version, id): in the log iff the batch committed."""
        if not self.events:
            return None
        e, version, _, _ = self.events[0]
        return (e.account_id, version, e.event_id)


@dataclass
class Plan:
    """A decided batch: a result per command (``None`` where ``replays`` reads it after the
    commit), the keys committed by earlier transactions to replay, and what to write."""

    results: list[Result | None]
    #: Per command index, the (account, first version, last version) of the result to read back.
    replays: dict[int, tuple[str, int, int]]
    writes: WritePlan | None


@dataclass(frozen=True)
class NeedsCounters:
    """A decision needs the spend counters of ``account_id``, which the load skipped."""

    account_id: str


def chain_hash(prev: bytes, version: int, e: Event, data_json: str) -> bytes:
    """The hash of event ``e`` at ``version``, chained on ``prev`` (``ledger.chain``)."""
    return event_hash(
        prev, account_id=e.account_id, version=version, event_id=e.event_id, type_=e.type,
        schema_version=e.schema_version, idempotency_key=e.idempotency_key, amount_ucr=e.amount_ucr,
        balance_after_ucr=e.balance_after_ucr, occurred_at=e.occurred_at, recorded_at=e.recorded_at,
        data_json=data_json,
    )


def plan_batch(commands: Sequence[c.Command], loaded: Loaded, now: datetime, card: RateCard, *,
               new_id: Callable[[], UUID] = new_uuid) -> Plan | NeedsCounters:
    """Decide every command of the batch in order on ``loaded`` (left unchanged).

    A refused command gets its error and changes nothing; the commands after it are decided on
    the state as if it never came.
    """
    states = dict(loaded.states)
    coupon_stock = dict(loaded.coupon_stock)
    w = WritePlan(now=now, original=dict(states), states=states)
    results: list[Result | None] = [None] * len(commands)
    replays: dict[int, tuple[str, int, int]] = {}
    keys = KeyBook(loaded.keys)
    heads: dict[str, tuple[int, bytes]] = {}

    ctx = Context(now=now, card=card, new_id=new_id, coupon_stock=coupon_stock)
    for i, cmd in enumerate(commands):
        acct = cmd.account_id
        key = cmd.idempotency_key
        fp = b""
        if key is not None:
            fp = cmd.fingerprint()
            seen = keys.check(acct, key, fp)
            if seen is not None:
                if isinstance(seen, ReplayStored):  # read back after the commit
                    replays[i] = (seen.account_id, seen.first_version, seen.last_version)
                elif isinstance(seen, ReplayInBatch):
                    first = results[seen.index]
                    assert isinstance(first, Outcome)  # only a success records its key
                    results[i] = Outcome(first.events, True)
                else:
                    results[i] = seen
                continue
        state = states.get(acct) or AccountState(account_id=acct)
        try:
            events, after = decide(state, cmd, ctx)
        except CountersNotLoaded as asked:
            return NeedsCounters(asked.account_id)
        except LedgerError as err:
            results[i] = err
            continue
        first_version, prev_hash = heads.get(acct) or (state.version, state.last_hash or GENESIS)
        version = first_version
        for e in events:
            version += 1
            data_json = canonical_json(event_data(e))
            prev_hash = chain_hash(prev_hash, version, e, data_json)
            w.events.append((e, version, prev_hash, data_json))
            # Exact type checks: isinstance on pydantic models goes through ABCMeta.
            if type(e) is CouponApplied:
                stock = coupon_stock.get(e.code)
                coupon_stock[e.code] = None if stock is None else stock - 1
                w.redeemed.append((acct, e.code, e.event_id))
            elif type(e) is ApiKeyCreated:
                assert isinstance(cmd, c.CreateApiKey)
                w.api_keys_created.append((e.key_id, e.account_id, e.role, e.name, e.prefix,
                                           bytes.fromhex(cmd.secret_sha256), now))
            elif type(e) is ApiKeyRevoked:
                w.api_keys_revoked.append((e.account_id, e.key_id))
        # The chain's head is kept aside and folded into the state once per account, below.
        states[acct] = after
        heads[acct] = (version, prev_hash)
        results[i] = Outcome(tuple(events))
        if key is not None:
            keys.record(acct, key, fp, i, first_version + 1, version)
    w.keys = keys.new
    for acct, (version, head) in heads.items():
        states[acct] = replace(states[acct], version=version, last_hash=head)
    # A keyed command that appended nothing (e.g. nothing was due to expire) still keeps its key.
    return Plan(results, replays, w if w.events or w.keys else None)
