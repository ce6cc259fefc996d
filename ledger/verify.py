"""``verify``: re-derive every account from its events and compare with what is stored.

For each account the events are read in version order and checked three ways: versions are
contiguous from 1, each row's ``hash`` is ``event_hash(previous row's hash, row)`` (so an edited
or missing row shows, even one whose own hash was recomputed: the next link breaks), and each
``balance_after_ucr`` is the previous one plus ``amount_ucr``. The events are then folded with
``ledger.state.apply`` and the result compared with the inline state the writer keeps beside
them (``accounts``, ``grants``, ``reservations``, ``deployments``, ``spend_counters``,
``limits``, ``coupon_redemptions``, ``disputes``, ``idempotency_keys``). Every difference is one line:
``account X: <what> is <stored>, events say <derived>``.

Accounts are read in chunks, each chunk in one REPEATABLE READ snapshot so a writer committing
meanwhile never shows up as a false mismatch, and each chunk's events are streamed from a
server-side cursor, so memory holds one chunk's inline rows and one account's fold at a time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import rows as rows_
from ledger.chain import GENESIS, event_hash
from ledger.events import Event, UsageMetered
from ledger.grants import Grant
from ledger.money import format_credits
from ledger.payments import Dispute
from ledger.rates import coupon_code
from ledger.rows import row_to_event
from ledger.state import AccountState, CounterKey, Deployment, Limit, LimitKey, Reservation, apply, spend_keys

#: ``progress(accounts_done, accounts_total)``, called after every account.
Progress = Callable[[int, int], None]

DEFAULT_CHUNK = 200

_EVENT_ROW = ("account_id, version, event_id, type, schema_version, data, idempotency_key, amount_ucr,"
              " balance_after_ucr, occurred_at, recorded_at, hash")


@dataclass(frozen=True)
class Mismatch:
    """One difference between what is stored and what the events say."""

    account_id: str
    what: str
    stored: str
    derived: str

    def __str__(self) -> str:
        return f"account {self.account_id}: {self.what} is {self.stored}, events say {self.derived}"


@dataclass
class VerifyReport:
    """How many accounts and events were checked, and every mismatch found."""

    accounts: int = 0
    events: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when nothing stored disagrees with the events."""
        return not self.mismatches

    def summary(self) -> str:
        """``verify: N accounts, M events, clean`` (or the number of mismatches)."""
        result = "clean" if self.clean else f"{len(self.mismatches)} mismatches"
        return f"verify: {self.accounts} accounts, {self.events} events, {result}"


async def verify(
    engine: AsyncEngine,
    *,
    accounts: Sequence[str] | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    progress: Progress | None = None,
) -> VerifyReport:
    """Check every account (or only ``accounts``) against its events; never writes."""
    report = VerifyReport()
    total = len(set(accounts)) if accounts is not None else await _count_accounts(engine)
    async for chunk in _chunks(engine, accounts, chunk_size):
        async with engine.connect() as raw:
            # One snapshot per chunk: the inline rows and the events it reads agree.
            conn = await raw.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                await _verify_chunk(conn, chunk, report, lambda: _tick(progress, report, total))
    return report


async def verify_account(engine: AsyncEngine, account_id: str) -> VerifyReport:
    """``verify`` restricted to one account."""
    return await verify(engine, accounts=[account_id])


def _tick(progress: Progress | None, report: VerifyReport, total: int) -> None:
    report.accounts += 1
    if progress is not None:
        # Event streams without an accounts row are counted too, so never report past 100 %.
        progress(report.accounts, max(total, report.accounts))


async def _count_accounts(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM accounts")) or 0)


async def _chunks(engine: AsyncEngine, accounts: Sequence[str] | None, size: int) -> AsyncIterator[list[str]]:
    if accounts is not None:
        ids = sorted(set(accounts))
        for i in range(0, len(ids), size):
            yield ids[i:i + size]
        return
    after: str | None = None
    while True:
        # Accounts that have a row, and event streams that lost theirs: both must be checked.
        # Each side's first ``size`` ids after ``after`` hold the union's first ``size``.
        async with engine.connect() as conn:
            ids = list((await conn.execute(text(
                "SELECT account_id FROM ("
                " (SELECT account_id FROM accounts WHERE CAST(:after AS text) IS NULL OR account_id > :after"
                "  ORDER BY account_id LIMIT :n)"
                " UNION"
                " (SELECT DISTINCT account_id FROM events WHERE CAST(:after AS text) IS NULL"
                "  OR account_id > :after ORDER BY account_id LIMIT :n)"
                ") AS t ORDER BY account_id LIMIT :n"), {"after": after, "n": size})).scalars())
        if not ids:
            return
        yield ids
        after = ids[-1]


@dataclass
class _Inline:
    """One chunk's inline rows, per account."""

    accounts: dict[str, Any] = field(default_factory=dict)
    grants: dict[str, dict[UUID, Grant]] = field(default_factory=lambda: defaultdict(dict))
    reservations: dict[str, dict[UUID, Reservation]] = field(default_factory=lambda: defaultdict(dict))
    deployments: dict[str, dict[str, Deployment]] = field(default_factory=lambda: defaultdict(dict))
    counters: dict[str, dict[CounterKey, int]] = field(default_factory=lambda: defaultdict(dict))
    limits: dict[str, dict[LimitKey, Limit]] = field(default_factory=lambda: defaultdict(dict))
    coupons: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    disputes: dict[str, dict[UUID, Dispute]] = field(default_factory=lambda: defaultdict(dict))
    keys: dict[str, dict[str, tuple[int, int]]] = field(default_factory=lambda: defaultdict(dict))


async def _load_inline(conn: AsyncConnection, ids: list[str]) -> _Inline:
    out = _Inline()
    p = {"ids": ids}

    async def rows(sql: str) -> Sequence[Any]:
        return (await conn.execute(text(sql), p)).all()

    # The accounts row is compared column by column (its settings as stored, not as decoded).
    for r in await rows(f"SELECT {rows_.columns(rows_.ACCOUNT_COLUMNS)} FROM accounts WHERE account_id = ANY(:ids)"):
        out.accounts[r.account_id] = r
    for r in await rows(f"SELECT account_id, {rows_.columns(rows_.GRANT_COLUMNS)} FROM grants"
                        " WHERE account_id = ANY(:ids)"):
        out.grants[r.account_id][r.grant_id] = rows_.grant(r._mapping)
    for r in await rows(f"SELECT account_id, {rows_.columns(rows_.RESERVATION_COLUMNS)} FROM reservations"
                        " WHERE account_id = ANY(:ids)"):
        out.reservations[r.account_id][r.reservation_id] = rows_.reservation(r._mapping)
    for r in await rows(f"SELECT account_id, {rows_.columns(rows_.DEPLOYMENT_COLUMNS)} FROM deployments"
                        " WHERE account_id = ANY(:ids)"):
        out.deployments[r.account_id][r.deployment_id] = rows_.deployment(r._mapping)
    for r in await rows("SELECT account_id, scope, subject, period, spent_ucr FROM spend_counters"
                        " WHERE account_id = ANY(:ids)"):
        out.counters[r.account_id][(r.scope, r.subject, r.period)] = r.spent_ucr
    for r in await rows(f"SELECT account_id, {rows_.columns(rows_.LIMIT_COLUMNS)} FROM limits"
                        " WHERE account_id = ANY(:ids)"):
        key, lim = rows_.limit(r._mapping)
        out.limits[r.account_id][key] = lim
    for r in await rows("SELECT account_id, code FROM coupon_redemptions WHERE account_id = ANY(:ids)"):
        out.coupons[r.account_id].add(coupon_code(r.code))  # compared as the fold keeps them
    for r in await rows(f"SELECT account_id, {rows_.columns(rows_.DISPUTE_COLUMNS)} FROM disputes"
                        " WHERE account_id = ANY(:ids)"):
        found = rows_.dispute(r._mapping)
        if found is not None:
            out.disputes[r.account_id][r.purchase_id] = found
    for r in await rows(f"SELECT account_id, {rows_.columns(rows_.KEY_COLUMNS)} FROM idempotency_keys"
                        " WHERE account_id = ANY(:ids)"):
        name, stored = rows_.stored_key(r._mapping)
        out.keys[r.account_id][name] = (stored.first_version, stored.last_version)
    return out


class _Replay:
    """One account's events checked and folded as they stream past."""

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.state = AccountState(account_id=account_id)
        self.version = 0
        self.prev_hash = GENESIS
        self.balance_after = 0
        self.events = 0
        self.counters: dict[CounterKey, int] = defaultdict(int)
        self.keys: dict[str, tuple[int, int]] = {}
        self.problems: list[Mismatch] = []

    def _bad(self, what: str, stored: object, derived: object) -> None:
        self.problems.append(Mismatch(self.account_id, what, str(stored), str(derived)))

    def add(self, row: Any) -> None:
        self.events += 1
        expected_version = self.version + 1
        if row.version != expected_version:
            self._bad(f"the event after version {self.version}", f"version {row.version}",
                      f"version {expected_version}")
        self.version = row.version
        stored_hash = bytes(row.hash)
        recomputed = event_hash(
            self.prev_hash, account_id=row.account_id, version=row.version, event_id=row.event_id,
            type_=row.type, schema_version=row.schema_version, idempotency_key=row.idempotency_key,
            amount_ucr=row.amount_ucr, balance_after_ucr=row.balance_after_ucr, occurred_at=row.occurred_at,
            recorded_at=row.recorded_at, data=row.data)
        if recomputed != stored_hash:
            self._bad(f"event {row.version} hash", stored_hash.hex()[:16], recomputed.hex()[:16])
        # Chain on the stored hash: one edited row is one line, not every row after it.
        self.prev_hash = stored_hash
        if row.balance_after_ucr != self.balance_after + row.amount_ucr:
            self._bad(f"event {row.version} balance after", format_credits(row.balance_after_ucr),
                      format_credits(self.balance_after + row.amount_ucr))
        self.balance_after = row.balance_after_ucr
        if row.idempotency_key is not None:
            first, _ = self.keys.get(row.idempotency_key, (row.version, row.version))
            self.keys[row.idempotency_key] = (first, row.version)
        try:
            event: Event = row_to_event(row)
            self.state = apply(self.state, event)
        except (ValidationError, KeyError, ValueError, TypeError) as exc:
            # Tampered data may not even parse, or may name a grant no earlier event created.
            self._bad(f"event {row.version} ({row.type})", "stored", f"it cannot be applied ({_brief(exc)})")
            return
        if isinstance(event, UsageMetered):
            for key in spend_keys(event.attribution, event.occurred_at):
                self.counters[key] += event.cost_ucr


def _brief(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    if isinstance(exc, KeyError):
        return f"unknown id {exc.args[0]}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


async def _verify_chunk(conn: AsyncConnection, ids: list[str], report: VerifyReport,
                        tick: Callable[[], None]) -> None:
    inline = await _load_inline(conn, ids)
    seen: set[str] = set()
    replay: _Replay | None = None
    result = await conn.stream(text(
        f"SELECT {_EVENT_ROW} FROM events WHERE account_id = ANY(:ids) ORDER BY account_id, version"),
        {"ids": ids})
    async for row in result:
        if replay is None or row.account_id != replay.account_id:
            if replay is not None:
                _finish(replay, inline, report)
                tick()
            replay = _Replay(row.account_id)
            seen.add(row.account_id)
        replay.add(row)
    if replay is not None:
        _finish(replay, inline, report)
        tick()
    for account_id in ids:
        if account_id not in seen:
            _finish(_Replay(account_id), inline, report)
            tick()


def _finish(r: _Replay, inline: _Inline, report: VerifyReport) -> None:
    report.events += r.events
    problems = r.problems
    a = r.account_id
    s = r.state

    def bad(what: str, stored: object, derived: object) -> None:
        problems.append(Mismatch(a, what, str(stored), str(derived)))

    row = inline.accounts.get(a)
    if row is None:
        if r.events:
            bad("the accounts row", "missing", f"version {r.version}")
        report.mismatches += problems
        return
    if not r.events:
        bad("version", row.version, "0 (the account has no events)")
        report.mismatches += problems
        return

    _compare(bad, "version", row.version, r.version)
    _compare(bad, "last_hash", bytes(row.last_hash).hex()[:16], r.prev_hash.hex()[:16])
    _compare(bad, "name", row.name, s.name)
    _compare(bad, "plan", row.plan, s.plan)
    _compare(bad, "status", row.status, s.status)
    _money(bad, "balance", row.balance_ucr, s.balance_ucr)
    _money(bad, "debt", row.debt_ucr, s.debt_ucr)
    _money(bad, "reserved", row.reserved_ucr, s.reserved_ucr)
    _money(bad, "spent", row.spent_ucr, s.spent_ucr)
    _money(bad, "balance of the last event", row.balance_ucr, r.balance_after)
    settings = row.settings or {}
    _compare(bad, "allowance cycle", settings.get("allowance_cycle"), s.allowance_cycle)
    _compare(bad, "budget", settings.get("budget"), rows_.budget_settings(s.budget))
    _compare(bad, "auto-refill", settings.get("auto_refill"), rows_.auto_refill_settings(s.auto_refill))
    _compare(bad, "subscription", settings.get("subscription"), rows_.subscription_settings(s.subscription))

    grants = inline.grants.get(a, {})
    for gid in _union(grants, s.grants):
        g, f = grants.get(gid), s.grants.get(gid)
        if g is None or f is None:
            bad(f"grant {gid}", "missing" if g is None else "present", "none" if f is None else "it exists")
            continue
        _compare(bad, f"grant {gid} source", g.source, f.source)
        _money(bad, f"grant {gid} original", g.original_ucr, f.original_ucr)
        _money(bad, f"grant {gid} remaining", g.remaining_ucr, f.remaining_ucr)
        _compare(bad, f"grant {gid} expires_at", g.expires_at, f.expires_at)

    reservations = inline.reservations.get(a, {})
    for rid in _union(reservations, s.reservations):
        rr, fr = reservations.get(rid), s.reservations.get(rid)
        if rr is None or fr is None:
            bad(f"reservation {rid}", "missing" if rr is None else "present",
                "none" if fr is None else "it exists")
            continue
        _compare(bad, f"reservation {rid} status", rr.status, fr.status)
        _money(bad, f"reservation {rid} held", rr.held_ucr, fr.held_ucr)

    deployments = inline.deployments.get(a, {})
    for did in _union(deployments, s.deployments):
        dr, fd = deployments.get(did), s.deployments.get(did)
        if dr is None or fd is None:
            bad(f"deployment {did}", "missing" if dr is None else "present",
                "none" if fd is None else "it exists")
            continue
        _compare(bad, f"deployment {did} status", dr.status, fd.status)
        _compare(bad, f"deployment {did} hours charged", dr.hours_charged, fd.hours_charged)
        _money(bad, f"deployment {did} credits", dr.credits_ucr, fd.credits_ucr)
        _compare(bad, f"deployment {did} running time used", dr.used, fd.used)

    # The store writes counters as deltas (a row may exist with 0); absent and 0 are the same.
    counters = inline.counters.get(a, {})
    for key in _union(counters, r.counters):
        _money(bad, f"spend counter {'/'.join(k for k in key if k)}", counters.get(key, 0), r.counters.get(key, 0))

    limits = inline.limits.get(a, {})
    for lk in _union(limits, s.limits):
        lr, fl = limits.get(lk), s.limits.get(lk)
        stored = None if lr is None else (lr.per_run_ucr, lr.per_day_ucr, lr.per_month_ucr)
        derived = None if fl is None else (fl.per_run_ucr, fl.per_day_ucr, fl.per_month_ucr)
        _compare(bad, f"{lk[0]} limit {lk[1]} (per run, day, month)", stored, derived)

    _compare(bad, "coupons redeemed", sorted(inline.coupons.get(a, set())), sorted(s.coupons_redeemed))

    disputes = inline.disputes.get(a, {})
    derived_disputes = {pid: p.dispute for pid, p in s.purchases.items() if p.dispute is not None}
    for pid in _union(disputes, derived_disputes):
        _compare(bad, f"dispute of purchase {pid}", disputes.get(pid, "none"), derived_disputes.get(pid, "none"))

    # A key's events are exactly versions first..last (first > last: the command appended nothing).
    keys = inline.keys.get(a, {})
    for k in _union(keys, r.keys):
        stored_range = keys.get(k)
        derived_range = r.keys.get(k)
        if stored_range is not None and stored_range[0] > stored_range[1] and derived_range is None:
            continue
        _compare(bad, f"idempotency key {k!r} versions", _range(stored_range), _range(derived_range))

    report.mismatches += problems


def _compare(bad: Callable[[str, object, object], None], what: str, stored: object, derived: object) -> None:
    if stored != derived:
        bad(what, stored, derived)


def _money(bad: Callable[[str, object, object], None], what: str, stored: int, derived: int) -> None:
    if stored != derived:
        bad(what, format_credits(stored), format_credits(derived))


def _range(r: tuple[int, int] | None) -> str:
    return "none" if r is None else f"{r[0]}..{r[1]}"


def _union(a: Mapping[Any, Any], b: Mapping[Any, Any]) -> Iterable[Any]:
    return sorted(set(a) | set(b), key=str)
