"""The relay: reads the event log in order from its checkpoint and enqueues what must follow.

The log is the outbox: a command commits its events and nothing else, and the relay derives the
follow-ups (alert checks, debt pauses, webhook deliveries, auto-refills) afterwards. The checkpoint lives in
PostgreSQL and moves only after the messages of a batch were handed to the broker, so when
Redis is down nothing is lost: the relay stalls, and catches up when the broker returns. A
message may go out twice (enqueued, then the checkpoint save failed): every actor is idempotent.

Alert checks go through an ``AlertScreen``: a check is sent only for an account that has an alert
due and not yet raised, judged on the state right after the batch (see its docstring for why
skipping the rest cannot lose an alert).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.alert_views import load_views, unfired
from ledger.alerts import AlertSpec, due_alerts, run_counters
from ledger.clock import Clock, SystemClock
from ledger.events import (
    Attribution,
    BudgetSet,
    CreditsReleased,
    CreditsReserved,
    DeploymentPaused,
    DeploymentResumed,
    DeploymentStarted,
    DeploymentStopped,
    Event,
    GrantExpired,
    LimitSet,
    PurchaseDisputed,
    RefundIssued,
    UsageMetered,
)
from ledger.log import LogEntry, load_checkpoint, read_log, save_checkpoint
from ledger.payments import AutoRefill
from ledger.rates import RateCard
from ledger.refill import crossings
from ledger.rows import auto_refill
from ledger.state import CounterKey
from workers.webhooks import register, wants

log = logging.getLogger(__name__)

CHECKPOINT = "relay"
#: A session-level advisory lock: one relay reads at a time (a second one waits as a standby).
RELAY_LOCK = 0x6C65646765720001

#: How often ``Relay.run`` measures its lag, and the lag it logs a warning about.
LAG_CHECK_S = 30.0
LAG_WARN = timedelta(seconds=60)
_LAG = text(
    "SELECT now() - recorded_at FROM events"
    " WHERE (tx_id, position) > (CAST(CAST(CAST(:tx AS bigint) AS text) AS xid8), :pos)"
    " ORDER BY tx_id, position LIMIT 1")
_OLDEST_WRITER = text(
    "SELECT pid, datname, state, date_trunc('second', now() - xact_start) AS age FROM pg_stat_activity"
    " WHERE backend_xid IS NOT NULL ORDER BY age(backend_xid) DESC LIMIT 1")

#: The relay's poll interval while events flow (it backs off to ``idle_s`` when they stop).
BUSY_S = 0.01

#: Events after which the account's alerts are checked: spend, holds, credits lost, and rules or
#: running costs that change what is due (a budget set below this month's spend alerts at once,
#: not at the next charge; a deployment started shortens the runway).
_ALERTING = (UsageMetered, CreditsReserved, GrantExpired, RefundIssued, PurchaseDisputed, BudgetSet, LimitSet,
             DeploymentStarted, DeploymentResumed)
#: Events that make an account burn faster without a debit of their own (the forecast counts them).
_BURNING = (DeploymentStarted, DeploymentResumed)
#: Events after which an alert that held may hold no longer (besides any event that adds credits):
#: a hold released, a budget or limit changed, a deployment stopped or paused.
_EASING = (CreditsReleased, BudgetSet, LimitSet, DeploymentStopped, DeploymentPaused)

#: Whose alerts a check is about: ``(account, agent, member, run)`` of the use that called for it.
Target = tuple[str, str | None, str | None, str | None]


@dataclass
class Plan:
    """The messages one batch of the log calls for."""

    alerts: dict[Target, dict[str, Any] | None] = field(default_factory=dict)
    debtors: set[str] = field(default_factory=set)
    deliveries: list[tuple[str, str, str]] = field(default_factory=list)
    #: Accounts with an event that may have made a held alert condition stop holding.
    eased: set[str] = field(default_factory=set)
    #: ``(account, crossing)``: each event that took a balance below its auto-refill threshold.
    refills: list[tuple[str, int]] = field(default_factory=list)
    #: Accounts refilling on a forecast (``runout_hours``) that spent, or started running costs.
    runouts: set[str] = field(default_factory=set)


def plan(entries: list[LogEntry], endpoints: dict[str, list[tuple[str, list[str] | None]]],
         refills: Mapping[str, AutoRefill] | None = None) -> Plan:
    """What follows from ``entries`` (pure): alert check candidates (one per account and subject),
    pauses, webhooks; for the accounts whose auto-refill is on (``refills``), a refill per crossing
    below the threshold, and a forecast check after spending where ``runout_hours`` is set."""
    out = Plan()
    refills = refills or {}
    for entry in entries:
        e: Event = entry.event
        if isinstance(e, _ALERTING):
            attribution = e.attribution if isinstance(e, UsageMetered) else None
            key = (e.account_id, attribution.agent if attribution else None,
                   attribution.member if attribution else None, attribution.run if attribution else None)
            out.alerts[key] = (attribution.model_dump(exclude_none=True) or None) if attribution else None
        if e.amount_ucr > 0 or isinstance(e, _EASING):
            out.eased.add(e.account_id)
        if isinstance(e, UsageMetered) and e.debt_added_ucr > 0:
            out.debtors.add(e.account_id)
        for endpoint_id, types in endpoints.get(e.account_id, ()):
            if wants(types, e.type):
                out.deliveries.append((e.account_id, endpoint_id, str(e.event_id)))
        refill = refills.get(e.account_id)
        if refill is not None:
            out.refills += [(e.account_id, v) for v in crossings(refill.threshold_ucr, [
                (entry.version, e.amount_ucr, e.balance_after_ucr)])]
            if refill.runout_hours is not None and (e.amount_ucr < 0 or isinstance(e, _BURNING)):
                out.runouts.add(e.account_id)
    return out


def _run_counters(t: Target) -> set[CounterKey]:
    _, agent, member, run = t
    return run_counters(Attribution(agent=agent, member=member, run=run)) if run else set()


def _checks_run(t: Target, spec: AlertSpec) -> bool:
    """Whether a check for ``t`` reads the run counter ``spec`` is about."""
    return (spec.scope, spec.subject, spec.period) in _run_counters(t)


def select_checks(candidates: Mapping[Target, dict[str, Any] | None], due: Mapping[str, Sequence[AlertSpec]],
                  recent: Mapping[str, Mapping[str, float]], now_s: float, recheck_s: float,  # float-ok: seconds
                  ) -> tuple[dict[Target, dict[str, Any] | None], dict[str, list[str]]]:
    """The checks to send (pure), and per account the alert keys they cover.

    ``due``: per account, the alerts due and not raised; ``recent``: per account, when a check
    covering each key was last sent. An account gets a check only for keys not covered within
    ``recheck_s``, and one check covers all of its keys but those of runs: any check reads the
    account's month and every limited subject's day and month, a run's counter only when its
    attribution names the run. So N events of one account and subject make at most one message.
    """
    by_account: dict[str, list[Target]] = {}
    for t in candidates:
        by_account.setdefault(t[0], []).append(t)
    out: dict[Target, dict[str, Any] | None] = {}
    covered: dict[str, list[str]] = {}
    for account, targets in by_account.items():
        memo = recent.get(account, {})
        specs = [s for s in due.get(account, ()) if now_s - memo.get(s.key, -math.inf) >= recheck_s]
        if not specs:
            continue
        chosen: list[Target] = []
        for spec in specs:
            if spec.period.startswith("R") and not any(_checks_run(t, spec) for t in chosen):
                chosen.append(next((t for t in targets if _checks_run(t, spec)), targets[0]))
        for t in chosen or targets[:1]:
            out[t] = candidates[t]
        covered[account] = [s.key for s in specs]
    return out, covered


class AlertScreen:
    """Lets an alert check through only when it can raise something.

    A check raises the alerts that hold and have not fired. The screen asks exactly that, for all
    the accounts of a batch at once (``load_views`` + ``unfired``: one to three statements), on
    the state as it is *after* the batch's events: they are committed before the relay reads
    them. An account with nothing due and unraised needs no check now; if something becomes due
    later, the event that makes it so is relayed later and screened in its turn. So at 1,000
    events/s over accounts far from every threshold, or whose alerts this period all fired, no
    check is sent at all, and a crossing sends one.

    While a check is queued its alerts still look due, so the screen remembers which keys a sent
    check covers and sends no other for them for ``recheck_s``: bounded duplicates while workers
    are slow, and a new try after a check was lost (dead-lettered). The memory is dropped for an
    account as soon as the log shows an event that may have made a held condition stop holding
    (credits added or released, a budget or limit changed, a deployment stopped or paused): a check
    that ran after it may have found nothing, and the next crossing must not wait. Periods (day,
    month) are those of the screen's clock, as a check's are those of the worker's.
    """

    def __init__(self, clock: Clock, card: Callable[[], RateCard], *, recheck_s: float = 5.0) -> None:  # float-ok
        self.clock = clock
        self.card = card
        self.recheck_s = recheck_s
        #: account -> alert key -> when (monotonic s) a check covering it was sent.
        self.recent: dict[str, dict[str, float]] = {}  # float-ok: monotonic seconds

    async def apply(self, conn: AsyncConnection, p: Plan) -> dict[str, list[str]]:
        """Keep in ``p.alerts`` only the checks worth sending; the keys they cover (see ``sent``)."""
        for account in p.eased:
            self.recent.pop(account, None)
        if not p.alerts:
            return {}
        runs: dict[str, set[CounterKey]] = {}
        for t in p.alerts:
            runs.setdefault(t[0], set()).update(_run_counters(t))
        now, card = self.clock.now(), self.card()
        views = await load_views(conn, runs, now)
        due = await unfired(conn, {a: due_alerts(v, now, card) for a, v in views.items()})
        p.alerts, covered = select_checks(p.alerts, due, self.recent, time.monotonic(), self.recheck_s)
        return covered

    def sent(self, covered: Mapping[str, list[str]]) -> None:
        """The checks covering ``covered`` were handed to the broker."""
        now_s = time.monotonic()
        if len(self.recent) > 10_000:  # forget what has expired, so the memory stays small
            self.recent = {a: keys for a, keys in self.recent.items()
                           if any(now_s - at < self.recheck_s for at in keys.values())}
        for account, keys in covered.items():
            self.recent.setdefault(account, {}).update(dict.fromkeys(keys, now_s))


Send = Callable[[Plan], None]


class Relay:
    """Reads the log from the ``relay`` checkpoint; hands each batch's messages to ``send``.

    Without a ``screen`` every alert check candidate is sent (one per account and subject per
    batch): correct, but at high event rates more checks than workers can run.
    """

    def __init__(self, engine: AsyncEngine, send: Send, *, batch: int = 1000,
                 screen: AlertScreen | None = None, lag_warn: timedelta = LAG_WARN, clock: Clock | None = None,
                 delivery_lease: timedelta = timedelta(minutes=5),
                 runout_recheck_s: float = 60.0) -> None:  # float-ok: a duration
        self.engine = engine
        self.clock = clock or SystemClock()
        #: How long a webhook delivery handed to the broker counts as in flight (``webhooks.register``).
        self.delivery_lease = delivery_lease
        self.send = send
        self.batch = batch
        self.screen = screen
        self.lag_warn = lag_warn
        #: The last lag measured by ``run`` (see ``relay_lag``).
        self.lag = timedelta(0)
        #: At most one forecast check per account this often: a busy account spends in every batch.
        self.runout_recheck_s = runout_recheck_s
        self._runout_sent: dict[str, float] = {}  # float-ok: monotonic seconds

    async def run_once(self) -> int:
        """Relay one batch; the number of events it covered (0 when caught up)."""
        async with self.engine.connect() as conn:
            after = await load_checkpoint(conn, CHECKPOINT)
            entries = await read_log(conn, after, self.batch)
            if not entries:
                return 0
            accounts = sorted({en.event.account_id for en in entries})
            endpoints: dict[str, list[tuple[str, list[str] | None]]] = {}
            for r in (await conn.execute(text(
                "SELECT account_id, endpoint_id, event_types FROM webhook_endpoints"
                " WHERE account_id = ANY(:a) AND status = 'enabled'"), {"a": accounts})).all():
                endpoints.setdefault(r.account_id, []).append((r.endpoint_id, r.event_types))
            messages = plan(entries, endpoints, await armed_refills(conn, accounts))
            # After the log read, on the same connection: the state it judges includes the batch.
            covered = await self.screen.apply(conn, messages) if self.screen is not None else {}
        if messages.deliveries:
            # Each delivery's schedule lives in PostgreSQL before its message goes out, so one the
            # broker loses is sent again by the scheduler's sweep once its lease runs out.
            async with self.engine.begin() as conn:
                await register(conn, messages.deliveries, self.clock.now(), self.delivery_lease)
        messages.runouts = self._due_runouts(messages.runouts)
        # Hand over first, then move the checkpoint: a crash in between re-sends, never drops.
        await asyncio.to_thread(self.send, messages)
        if self.screen is not None:
            self.screen.sent(covered)
        async with self.engine.begin() as conn:
            await save_checkpoint(conn, CHECKPOINT, entries[-1].at)
        return len(entries)

    def _due_runouts(self, accounts: set[str]) -> set[str]:
        """The forecast checks to send now (not sent for the account within ``runout_recheck_s``).

        Skipping one loses nothing that matters: the account spends again, or its balance crosses
        the threshold, which is never skipped."""
        now_s = time.monotonic()
        if len(self._runout_sent) > 10_000:
            self._runout_sent = {a: t for a, t in self._runout_sent.items() if now_s - t < self.runout_recheck_s}
        due = {a for a in accounts if now_s - self._runout_sent.get(a, -math.inf) >= self.runout_recheck_s}
        self._runout_sent.update(dict.fromkeys(due, now_s))
        return due

    async def run(self, stop: asyncio.Event, *, idle_s: float = 0.2, busy_s: float = BUSY_S,  # float-ok
                  retry_s: float = 1.0) -> None:  # float-ok: durations
        """Relay until ``stop`` is set; while another relay holds the lease, stand by.

        Polls every ``busy_s`` while events flow and backs off to ``idle_s`` when they stop (see
        ``next_delay``).
        """
        while not stop.is_set():
            async with self.engine.connect() as lease:
                held = (await lease.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": RELAY_LOCK})).scalar()
                await lease.commit()
                if not held:
                    await _sleep(stop, retry_s)
                    continue
                try:
                    delay = idle_s
                    watch_at = time.monotonic()
                    while not stop.is_set():
                        if time.monotonic() >= watch_at:
                            watch_at = time.monotonic() + LAG_CHECK_S
                            await self.watch_lag()
                        try:
                            moved = await self.run_once()
                        except Exception as exc:  # the broker or the database is away: retry, never skip
                            log.warning("relay stalled: %s: %s", type(exc).__name__, exc)
                            await _sleep(stop, retry_s)
                            continue
                        delay = next_delay(moved, self.batch, delay, busy_s, idle_s)
                        if delay:
                            await _sleep(stop, delay)
                finally:
                    await lease.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": RELAY_LOCK})
                    await lease.commit()

    async def watch_lag(self) -> None:
        """Measure the lag; past ``lag_warn``, log it with the transaction that holds the horizon."""
        try:
            async with self.engine.connect() as conn:
                self.lag = await relay_lag(conn)
                holder = await oldest_writer(conn) if self.lag > self.lag_warn else None
        except Exception as exc:  # a measurement: never stop relaying for it
            log.warning("relay lag unknown: %s: %s", type(exc).__name__, exc)
            return
        if self.lag > self.lag_warn:
            log.warning("the relay is %d s behind the log%s", self.lag.total_seconds(), (
                f"; the oldest write transaction on the server (pid {holder.pid}, database {holder.datname!r},"
                f" {holder.state}, open {holder.age}) holds back every log reader" if holder else ""))


async def armed_refills(conn: AsyncConnection, accounts: list[str]) -> dict[str, AutoRefill]:
    """The auto-refill of each of ``accounts`` whose auto-refill is on."""
    rows = (await conn.execute(text(
        "SELECT account_id, settings FROM accounts WHERE account_id = ANY(:a) AND settings ? 'auto_refill'"),
        {"a": accounts})).all()
    refills = {r.account_id: auto_refill(r.settings) for r in rows}
    return {a: r for a, r in refills.items() if r.enabled}


async def relay_lag(conn: AsyncConnection) -> timedelta:
    """How long the oldest event the relay has not handed over has waited (zero when caught up).

    Two index lookups, so cheap enough to poll for an alert. It counts events the relay cannot
    read yet too: when a transaction anywhere on the server stays open, this grows while the
    relay reads nothing (see docs/workers.md, Operations).
    """
    at = await load_checkpoint(conn, CHECKPOINT)
    lag = (await conn.execute(_LAG, {"tx": at.tx_id, "pos": at.position})).scalar()
    return max(lag, timedelta(0)) if lag is not None else timedelta(0)


async def oldest_writer(conn: AsyncConnection) -> Any:
    """The session whose transaction id is the server's oldest in flight (what holds log readers back)."""
    return (await conn.execute(_OLDEST_WRITER)).first()


def next_delay(moved: int, batch: int, delay: float, busy_s: float, idle_s: float) -> float:  # float-ok
    """How long the relay sleeps before its next read (pure).

    A full batch: none (there is more). Some events: ``busy_s``, since under a steady load the
    next read right away mostly finds nothing (the newest events are still above the oldest
    transaction in flight) and a long sleep then is what an event waits (the lag figures are in
    docs/benchmarks.md, "Workers"). Nothing: twice the last
    delay, up to ``idle_s``, so an idle relay still polls only every ``idle_s``.
    """
    if moved >= batch:
        return 0.0
    if moved:
        return min(busy_s, idle_s)
    return min(max(delay * 2, busy_s), idle_s)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:  # float-ok: a duration
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
