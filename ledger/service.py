"""The ledger service: what entrypoints call. Writes go through the group-commit writer; reads
come straight from the inline state and the account's own event stream (exact, no lag).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from ledger import commands as c
from ledger import rows as row_map
from ledger.alert_views import load_views, unfired
from ledger.alerts import due_alerts, run_counters
from ledger.clock import Clock, add_months, month_key
from ledger.decide import Context, decide, price_usage
from ledger.errors import InvalidRequest, InvalidState, LedgerError, NotFound, PaymentRequired, UnknownAccount
from ledger.events import Attribution, Event, UsageMetered
from ledger.money import credits_to_exact_ucr, floor_ucr
from ledger.planner import Outcome, Result, new_uuid
from ledger.rate_cards import latest_rate_card_version, rate_card_version, store_rate_card
from ledger.rates import RateCard, price
from ledger.rows import EVENT_COLUMNS, row_to_event
from ledger.store import EventStore
from ledger.views import (
    Account,
    AccountSummary,
    Balance,
    DeploymentView,
    Estimate,
    Explanation,
    burn_window,
    limits_in_force,
    rounding,
    runout_at,
)
from ledger.writer import GroupCommitWriter

log = logging.getLogger(__name__)

#: The columns of an account's recent events the balance read returns.
_RECENT = ("version", "event_id", "type", "schema_version", "data", "idempotency_key", "amount_ucr",
           "balance_after_ucr", "occurred_at", "recorded_at")


class Ledger:
    """One account-safe entry point for every command and exact read."""

    def __init__(self, engine: AsyncEngine, clock: Clock, card: RateCard, *, window_s: float = 0.0,  # float-ok
                 max_batch: int = 512, concurrency: int = 2, parallel_at: int = 16,
                 rates_check_s: float = 0.0) -> None:  # float-ok: a duration
        pool = engine.sync_engine.pool
        if isinstance(pool, QueuePool) and pool.size() <= concurrency:
            # The writer keeps one connection per batch in flight; reads need the rest, and the
            # pool is a hard cap (no overflow), so they would wait for ever.
            raise ValueError(f"a pool of {pool.size()} connections leaves none for reads beside"
                             f" {concurrency} writer connections: raise CREDITS_POOL_SIZE")
        self.engine = engine
        self.clock = clock
        self.card = card
        self.store = EventStore(engine, clock, lambda: self.card, keep_connections=concurrency)
        self.writer = GroupCommitWriter(self.store, window_s=window_s, max_batch=max_batch,
                                        concurrency=concurrency, parallel_at=parallel_at)
        #: Seconds between looks for a newer rate card (0: never; the card given is kept).
        self.rates_check_s = rates_check_s
        self._follower: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.writer.start()
        if self.rates_check_s > 0:
            self._follower = asyncio.create_task(self._follow_rates(), name="rate-card follower")

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None
        await self.writer.stop()
        await self.store.close()

    # ---- writes ------------------------------------------------------------------------------

    async def execute(self, command: c.Command) -> Outcome:
        """Run one command through the group-commit writer; raises the error that refused it."""
        return await self.writer.submit(command)

    async def execute_many(self, commands: Sequence[c.Command]) -> list[Result]:
        """Run many commands (e.g. a usage batch); one refused command never fails the others."""
        return await self.writer.submit_many(commands)

    async def load_rates(self, card: RateCard, source: str) -> bool:
        """Store a new rate-card version and price with it from now on (other processes: within
        their ``rates_check_s``)."""
        added = await store_rate_card(self.engine, card, source)
        await self.refresh_rates()
        return added

    async def refresh_rates(self) -> bool:
        """Price with the latest stored version; True if it changed. While it has not, this is
        one index lookup of the latest version's name."""
        async with self.engine.connect() as conn:
            latest = await latest_rate_card_version(conn)
            if latest is None or latest == self.card.version:
                return False
            card = await rate_card_version(conn, latest)
        if card is None:
            return False
        # One assignment: a command takes the card once (``Context``), so it is priced wholly
        # with one version and records that version.
        self.card = card
        return True

    async def _follow_rates(self) -> None:
        """Every ``rates_check_s``, pick up a version loaded by another process (``credits rates
        load``). A task beside the commands: no command waits for it or pays a round trip."""
        while True:
            await asyncio.sleep(self.rates_check_s)
            try:
                if await self.refresh_rates():
                    log.info("pricing with rate card %s from now on", self.card.version)
            except Exception:  # an outage: keep the card in hand, look again next time
                log.warning("could not look for a new rate card version", exc_info=True)

    # ---- reads -------------------------------------------------------------------------------

    async def account(self, account_id: str) -> Account:
        async with self.engine.connect() as conn:
            row = (await conn.execute(text(
                "SELECT account_id, name, plan, status, opened_at, settings FROM accounts WHERE account_id = :a"),
                {"a": account_id})).first()
        if row is None:
            raise UnknownAccount(account_id)
        return Account(row.account_id, row.name, row.plan, row.status, row.opened_at, row.settings)

    async def account_summaries(self, *, limit: int = 50, after: str | None = None) -> list[AccountSummary]:
        """Accounts in id order, those after ``after`` (a keyset page: stable while accounts open), with
        their exact balances. ``limit + 1`` rows tell the caller whether there are more."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT account_id, name, plan, status, opened_at, balance_ucr, reserved_ucr, debt_ucr"
                " FROM accounts WHERE CAST(:after AS text) IS NULL OR account_id > :after"
                " ORDER BY account_id LIMIT :n"), {"after": after, "n": limit})).all()
        return [AccountSummary(r.account_id, r.name, r.plan, r.status, r.opened_at, r.balance_ucr, r.reserved_ucr,
                               r.debt_ucr) for r in rows]

    async def balance(self, account_id: str, *, recent: int = 20, forecast: bool = False) -> Balance:
        """The exact balance, read from the inline state, with the last ``recent`` entries.

        With ``forecast``, also when the available balance runs out at the last 7 days' burn rate
        (whole UTC days: 7 to 8 of them).
        """
        now = self.clock.now()
        window_start, days = burn_window(now)
        async with self.engine.connect() as conn:
            # One statement on the asyncpg connection (the most frequent read; SQLAlchemy's text()
            # machinery cost more CPU than the query): the account, its live credits by source, the
            # window's spend from its day counters (a few rows however long its history) and its
            # latest entries, the last two as arrays of rows decoded in binary.
            pg: Any = (await conn.get_raw_connection()).driver_connection
            row = await pg.fetchrow(
                "SELECT a.plan, a.status, a.balance_ucr, a.debt_ucr, a.reserved_ucr, a.version, a.opened_at,"
                " a.settings,"
                " ARRAY(SELECT ROW(g.source, sum(g.remaining_ucr)::bigint) FROM grants g"
                "  WHERE g.account_id = a.account_id AND g.remaining_ucr > 0 GROUP BY g.source) AS sources,"
                " (SELECT coalesce(sum(s.spent_ucr), 0)::bigint FROM spend_counters s WHERE s.account_id = a.account_id"
                "  AND s.scope = 'account' AND s.subject = '' AND s.period = ANY($2::text[])) AS burned,"
                f" ARRAY(SELECT ROW({row_map.columns(_RECENT, 'e')}) FROM events e"
                "  WHERE e.account_id = a.account_id ORDER BY e.version DESC LIMIT $3) AS recent"
                " FROM accounts a WHERE a.account_id = $1", account_id, days, max(recent, 0))
        if row is None:
            raise UnknownAccount(account_id)
        burned = row["burned"] if forecast else 0
        by_source = {"allowance": 0, "purchase": 0, "promotion": 0, "refund": 0}
        by_source.update({source: total for source, total in row["sources"]})
        plan = self.card.plans.get(row["plan"])
        allowance = floor_ucr(credits_to_exact_ucr(plan.monthly_credits)) if plan else 0
        cycle = row_map.allowance_cycle(row["settings"])
        # Anonymous rows come back as tuples: named by the same list that built them.
        entries = [(r["version"], row_map.event(account_id, r))
                   for r in (dict(zip(_RECENT, t, strict=True)) for t in row["recent"])]
        available = row["balance_ucr"] - row["reserved_ucr"]
        return Balance(
            account_id=account_id, plan=row["plan"], status=row["status"], balance_ucr=row["balance_ucr"],
            available_ucr=available, reserved_ucr=row["reserved_ucr"],
            debt_ucr=row["debt_ucr"], by_source=by_source, monthly_allowance_ucr=allowance,
            resets_at=add_months(row["opened_at"], max(cycle, 0) + 1) if allowance else None,
            version=row["version"], recent=[e for _, e in entries], entries=entries,
            runout_at=runout_at(now, available, burned, now - window_start), burned_ucr=burned,
            burn_window=now - window_start)

    async def entries(self, account_id: str, *, limit: int = 50, offset: int = 0) -> list[Event]:
        """The account's ledger, newest first, straight from its event stream."""
        if not 1 <= limit <= 500 or offset < 0:
            raise InvalidRequest("limit must be 1..500 and offset >= 0")
        async with self.engine.connect() as conn:
            exists = (await conn.execute(text("SELECT 1 FROM accounts WHERE account_id = :a"),
                                         {"a": account_id})).first()
            if exists is None:
                raise UnknownAccount(account_id)
            return await self._events(conn, account_id, limit, offset)

    async def ledger_page(self, account_id: str, *, limit: int = 50, offset: int = 0,
                          before_version: int | None = None) -> list[tuple[int, Event]]:
        """``(version, event)`` newest first; ``before_version`` continues a stable iteration."""
        if not 1 <= limit <= 501 or offset < 0:
            raise InvalidRequest("limit must be 1..500 and offset >= 0")
        async with self.engine.connect() as conn:
            await self._exists(conn, account_id)
            rows = (await conn.execute(text(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE account_id = :a AND version < :b"
                " ORDER BY version DESC LIMIT :l OFFSET :o"),
                {"a": account_id, "b": before_version if before_version is not None else 2**62,
                 "l": limit, "o": offset})).all()
        return [(r.version, row_to_event(r)) for r in rows]

    async def entry(self, account_id: str, event_id: Any) -> tuple[int, Event]:
        """One entry of the account by its id; 404 when the account has no such entry."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(text(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE account_id = :a AND event_id = :e"),
                {"a": account_id, "e": event_id})).first()
        if row is None:
            raise NotFound(f"no entry {event_id} in account {account_id!r}")
        return row.version, row_to_event(row)

    async def explain(self, account_id: str, event_id: Any) -> Explanation:
        """Why an entry cost what it did: its price on the card version it records, the rounding,
        and the budget and limits in force (the latest setting of each before it)."""
        version, e = await self.entry(account_id, event_id)
        if not isinstance(e, UsageMetered):
            return Explanation(version, e, None, "none: this entry is not priced usage", [])
        async with self.engine.connect() as conn:
            card = await rate_card_version(conn, e.rate_card_version)
            rules = (await conn.execute(text(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE account_id = :a AND version < :v"
                " AND type IN ('BudgetSet', 'LimitSet') ORDER BY version"), {"a": account_id, "v": version})).all()
        p = price(card, e.operation, e.quantities) if card is not None and e.operation in card.operations else None
        return Explanation(version, e, p, rounding(e, p.minimum_ucr if p else None),
                           limits_in_force(e, [row_to_event(r) for r in rules]))

    async def deployments(self, account_id: str, deployment_id: str | None = None) -> list[DeploymentView]:
        """The account's deployments (newest first), or just ``deployment_id``."""
        async with self.engine.connect() as conn:
            await self._exists(conn, account_id)
            rows = (await conn.execute(text(
                "SELECT deployment_id, instance_type, status, hourly_ucr, hours_charged, credits_ucr,"
                " paused_reason, started_at FROM deployments WHERE account_id = :a"
                " AND (CAST(:d AS text) IS NULL OR deployment_id = :d) ORDER BY started_at DESC, deployment_id"),
                {"a": account_id, "d": deployment_id})).all()
        return [DeploymentView(*r) for r in rows]

    async def spent(self, account_id: str, scope: str = "account", subject: str = "") -> int:
        """What the account (or one agent/member) spent this month, from the spend counters."""
        async with self.engine.connect() as conn:
            value = (await conn.execute(text(
                "SELECT spent_ucr FROM spend_counters WHERE account_id = :a AND scope = :s AND subject = :j"
                " AND period = :p"), {"a": account_id, "s": scope, "j": subject,
                                      "p": month_key(self.clock.now())})).scalar()
        return int(value or 0)

    async def raise_due_alerts(self, account_id: str, attribution: Attribution | None = None) -> list[Event]:
        """Raise every alert whose condition holds now and that has not fired this period.

        The check reads an unlocked snapshot; each alert is then a command keyed by its name,
        re-checked under the account's lock, so concurrent or repeated checks raise it once.
        """
        now = self.clock.now()
        async with self.engine.connect() as conn:
            # The few columns and counters the conditions read, not a command's full snapshot.
            views = await load_views(conn, {account_id: run_counters(attribution)}, now)
            if account_id not in views:
                raise UnknownAccount(account_id)
            due = await unfired(conn, {account_id: due_alerts(views[account_id], now, self.card)})
        commands = [c.RaiseAlert(account_id=account_id, kind=spec.kind, scope=spec.scope, subject=spec.subject,
                                 period=spec.period, threshold_pct=spec.threshold_pct, idempotency_key=spec.key)
                    for spec in due.get(account_id, [])]
        raised: list[Event] = []
        for result in await self.execute_many(commands) if commands else []:
            if isinstance(result, Outcome) and not result.replayed:
                raised.extend(result.events)
            elif isinstance(result, LedgerError) and not isinstance(result, InvalidState):
                raise result
        return raised

    async def notifications(self, account_id: str, *, limit: int = 50,
                            before_version: int | None = None) -> list[tuple[int, Event]]:
        """Alerts raised on the account, newest first."""
        async with self.engine.connect() as conn:
            await self._exists(conn, account_id)
            rows = (await conn.execute(text(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE account_id = :a AND type = 'AlertRaised'"
                " AND version < :b ORDER BY version DESC LIMIT :l"),
                {"a": account_id, "b": before_version if before_version is not None else 2**62,
                 "l": limit})).all()
        return [(r.version, row_to_event(r)) for r in rows]

    async def _exists(self, conn: Any, account_id: str) -> None:
        exists = (await conn.execute(text("SELECT 1 FROM accounts WHERE account_id = :a"),
                                     {"a": account_id})).first()
        if exists is None:
            raise UnknownAccount(account_id)

    async def _events(self, conn: Any, account_id: str, limit: int, offset: int) -> list[Event]:
        rows = (await conn.execute(text(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE account_id = :a ORDER BY version DESC"
            " LIMIT :l OFFSET :o"), {"a": account_id, "l": limit, "o": offset})).all()
        return [row_to_event(r) for r in rows]

    async def estimate(self, account_id: str, operation: str, *, quantity: int | None = None,
                       quantities: Mapping[str, int] | None = None,
                       attribution: Attribution | None = None) -> Estimate:
        """What ``operation`` would cost and whether the account could pay now (not a guarantee).

        A dry run of the gated charge on an unlocked snapshot: same rules, nothing written.
        """
        cmd = c.Charge(account_id=account_id, operation=operation, quantity=quantity,
                       quantities=dict(quantities) if quantities is not None else None,
                       attribution=attribution or Attribution())
        p = price_usage(self.card, operation, quantity, quantities)
        now = self.clock.now()
        async with self.engine.connect() as conn:
            state = await self.store.snapshot(conn, cmd, now, self.card)
        ctx = Context(now=now, card=self.card, new_id=new_uuid)
        try:
            _, after = decide(state, cmd, ctx)
        except PaymentRequired as refused:
            return Estimate(p, False, refused.remaining_ucr, refused.reason)
        return Estimate(p, True, after.available_ucr + p.amount_ucr, None)
