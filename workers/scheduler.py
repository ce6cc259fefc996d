"""The scheduler: turns time into keyed commands, sent to the ``execute_commands`` actor.

Each tick finds what is due now: every uncharged hour of every running deployment whose paid
time has run out (in order, so a tick after downtime catches up each missed hour once), monthly
allowances, grant and reservation expiry, yesterday's / last week's spend summaries, and webhook
deliveries that are due and not in flight (``webhooks.claim_due``). Every command carries a key
derived from what it is about (``deployment:{id}:hour:{n}``, ``allowance:{cycle}``,
``alert:daily_summary:...``), so two schedulers at once, or a tick repeated after a crash, can
only replay; a delivery is claimed under a row lock that a second sweep skips. A lease (an
advisory lock) keeps a second scheduler idle while one runs, to save the work, not for safety.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import text

from ledger import commands as c
from ledger import rows as row_map
from ledger.alerts import previous_periods
from ledger.clock import Clock, cycle_at
from ledger.money import credits_to_exact_ucr, floor_ucr
from ledger.service import Ledger
from workers import webhooks
from workers.commands import dump

log = logging.getLogger(__name__)

SCHEDULER_LOCK = 0x6C65646765720002
#: Commands per message: one message is one transaction of the group-commit writer.
CHUNK = 200


@dataclass
class Tick:
    """What one tick sent."""

    hours: int = 0
    allowances: int = 0
    expiries: int = 0
    summaries: int = 0
    #: Webhook deliveries sent again from PostgreSQL (due, not in flight: the broker lost them).
    webhooks: int = 0
    skipped: bool = False
    commands: list[c.Command] = field(default_factory=list)


def due_hours(rows: Sequence[Any], now: datetime) -> list[c.ChargeDeploymentHour]:
    """Every uncharged hour of the running deployments in ``rows`` that is due by ``now``, in order.

    Hour n is due once the running time used reaches n hours (``hour_due_at``): pauses stop the
    clock, so an hour paid stays paid however the deployment's running time is split.
    """
    out: list[c.ChargeDeploymentHour] = []
    for r in rows:
        d = row_map.deployment(r._mapping)
        if d.segment_started_at is None:
            continue
        out += [c.ChargeDeploymentHour(account_id=r.account_id, deployment_id=d.deployment_id, hour_index=n,
                                       idempotency_key=f"deployment:{d.deployment_id}:hour:{n}")
                for n in d.hours_due(now)]
    return out


class Scheduler:
    """Finds due work each tick and sends it as keyed command batches through ``send``."""

    def __init__(self, ledger: Ledger, send: Callable[[list[list[Any]]], object], clock: Clock | None = None, *,
                 deliver: Callable[[webhooks.Due, timedelta], object] | None = None,
                 webhook_schedule: webhooks.Schedule | None = None) -> None:
        self.ledger = ledger
        self.send = send
        self.clock = clock or ledger.clock
        #: Hands a webhook delivery to the broker (``None``: this scheduler sweeps none).
        self.deliver = deliver
        self.webhook_schedule = webhook_schedule or webhooks.Schedule()
        #: Summary periods already sent by this process: the scan over a day's events runs once
        #: per period, not every tick (a restart or the other scheduler repeats it once; the
        #: keys make that a replay).
        self._summarised: set[str] = set()
        self._pending_periods: set[str] = set()

    async def tick(self) -> Tick:
        """One pass over everything due now, under the lease (skipped if another scheduler holds it)."""
        async with self.ledger.engine.connect() as lease:
            held = (await lease.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": SCHEDULER_LOCK})).scalar()
            await lease.commit()
            if not held:
                return Tick(skipped=True)
            try:
                return await self._tick(self.clock.now())
            finally:
                await lease.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEDULER_LOCK})
                await lease.commit()

    async def _tick(self, now: datetime) -> Tick:
        t = Tick()
        card = self.ledger.card
        paid_plans = [p.id for p in card.plans.values() if floor_ucr(credits_to_exact_ucr(p.monthly_credits)) > 0]
        async with self.ledger.engine.connect() as conn:
            running = (await conn.execute(text(
                f"SELECT account_id, {row_map.columns(row_map.DEPLOYMENT_COLUMNS)}"
                " FROM deployments WHERE status = 'running' ORDER BY account_id, deployment_id"))).all()
            accounts = (await conn.execute(text(
                "SELECT account_id, opened_at, settings FROM accounts"
                " WHERE plan = ANY(:p) AND status <> 'closed'"), {"p": paid_plans})).all()
            expiring = (await conn.execute(text(
                "SELECT DISTINCT account_id FROM grants WHERE remaining_ucr > 0 AND expires_at <= :now"),
                {"now": now})).scalars().all()
            holds = (await conn.execute(text(
                "SELECT DISTINCT account_id FROM reservations WHERE status = 'held' AND expires_at <= :now"),
                {"now": now})).scalars().all()
        hours = due_hours(running, now)
        allowances: list[c.Command] = []
        for a in accounts:
            cycle = cycle_at(a.opened_at, now)
            # A plan paid through Stripe gets its allowance with each paid invoice, not by the calendar.
            if cycle > row_map.allowance_cycle(a.settings) and not row_map.stripe_pays_allowance(a.settings):
                allowances.append(c.GrantAllowance(account_id=a.account_id, cycle=cycle,
                                                   idempotency_key=f"allowance:{cycle}"))
        expiries: list[c.Command] = [c.ExpireGrants(account_id=a) for a in expiring]
        expiries += [c.ExpireReservations(account_id=a) for a in holds]
        summaries = await self._summaries(now)
        t.hours, t.allowances, t.expiries, t.summaries = len(hours), len(allowances), len(expiries), len(summaries)
        t.commands = [*hours, *allowances, *expiries, *summaries]
        # A deployment's hours stay in one message, in order: one transaction charges them in turn.
        for chunk in _chunks(t.commands):
            await asyncio.to_thread(self.send, [dump(cmd) for cmd in chunk])
        # Only once they were handed over: a failed send leaves them for the next tick.
        self._summarised |= self._pending_periods
        self._pending_periods = set()
        if self.deliver is not None:
            # Claimed (in flight for the lease) and committed first, then handed over: a failed
            # send leaves them to the sweep after the lease runs out.
            due = await webhooks.sweep(self.ledger.engine, now, self.webhook_schedule)
            for d in due:
                await asyncio.to_thread(self.deliver, d, timedelta(0))
            t.webhooks = len(due)
        return t

    async def _summaries(self, now: datetime) -> list[c.Command]:
        """Yesterday's and last week's spend per account that spent anything (keyed: sent once each)."""
        day, week = previous_periods(now)
        start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        iso_monday = start_of_day - timedelta(days=start_of_day.weekday())
        spans: list[tuple[Literal["daily_summary", "weekly_summary"], str, datetime, datetime]] = [
            ("daily_summary", day, start_of_day - timedelta(days=1), start_of_day),
            ("weekly_summary", week, iso_monday - timedelta(days=7), iso_monday)]
        out: list[c.Command] = []
        async with self.ledger.engine.connect() as conn:
            for kind, period, start, end in spans:
                if period in self._summarised:
                    continue
                self._pending_periods.add(period)
                for r in (await conn.execute(text(
                    "SELECT account_id, sum(-amount_ucr) AS spent FROM events WHERE type = 'UsageMetered'"
                    " AND occurred_at >= :s AND occurred_at < :e GROUP BY account_id ORDER BY account_id"),
                        {"s": start, "e": end})).all():
                    out.append(c.RaiseAlert(account_id=r.account_id, kind=kind, scope="account", subject="",
                                            period=period, threshold_pct=0, spent_ucr=int(r.spent),
                                            idempotency_key=f"alert:{kind}:account::{period}:0"))
        return out

    async def run(self, stop: asyncio.Event, interval_s: float = 30.0) -> None:  # float-ok: a duration
        """Tick every ``interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                t = await self.tick()
                if t.commands or t.webhooks:
                    log.info("scheduler: %d hours, %d allowances, %d expiries, %d summaries, %d webhooks sent",
                             t.hours, t.allowances, t.expiries, t.summaries, t.webhooks)
            except Exception as exc:  # the next tick finds the same work again: nothing is lost
                log.warning("scheduler tick failed: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)


def _chunks(commands: list[c.Command]) -> list[list[c.Command]]:
    """Chunks of about ``CHUNK`` commands that never split one account's commands."""
    chunks: list[list[c.Command]] = []
    current: list[c.Command] = []
    for i, cmd in enumerate(commands):
        current.append(cmd)
        nxt = commands[i + 1] if i + 1 < len(commands) else None
        if len(current) >= CHUNK and (nxt is None or nxt.account_id != cmd.account_id):
            chunks.append(current)
            current = []
    if current:
        chunks.append(current)
    return chunks
