"""The actors. Thin and idempotent: each turns a message into ledger commands whose keys make a
redelivery (Dramatiq delivers at least once) a replay, never a second charge.

``declare(broker)`` registers them on a broker and returns them; nothing is declared at import.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeGuard

import dramatiq
from dramatiq import Broker

from ledger import commands as c
from ledger import intake
from ledger.billing.auto_refill import charge_refill, refill_before_pausing, refill_if_running_out
from ledger.errors import (
    IdempotencyConflict,
    InvalidState,
    LedgerError,
    NotFound,
    PaymentProviderNotConfigured,
    PaymentRequired,
)
from ledger.events import Attribution
from workers import commands as payloads
from workers import webhooks
from workers.context import context

log = logging.getLogger(__name__)


def _transient(result: object) -> TypeGuard[LedgerError]:
    """A failure worth a retry (``LedgerError.transient``: the database unreachable, a commit
    lost, a fault). Retrying is safe: every command here is keyed."""
    return isinstance(result, LedgerError) and result.transient


async def execute_commands(batch: list[list[Any]]) -> None:
    """Run keyed commands (hourly charges, allowances, expiries, summaries) as one ordered group.

    A deployment hour that cannot be paid tries one auto-refill before it pauses: the hours are
    first asked not to pause, and those refused go through ``refill_before_pausing``.
    """
    commands = [payloads.load(p) for p in batch]
    ctx = context()
    ledger = await ctx.ledger()
    results = await ledger.execute_many([
        cmd.model_copy(update={"pause_if_unpaid": False}) if _pausing_hour(cmd) else cmd for cmd in commands])
    for i, (cmd, result) in enumerate(zip(commands, results, strict=True)):
        if _pausing_hour(cmd) and isinstance(result, PaymentRequired | IdempotencyConflict):
            try:
                # A conflict: an earlier delivery of this hour paused it (recorded as asked, with
                # pause_if_unpaid): asked that way again, it replays.
                results[i] = (await refill_before_pausing(ledger, ctx.stripe(), cmd)
                              if isinstance(result, PaymentRequired) else await ledger.execute(cmd))
            except LedgerError as exc:
                results[i] = exc
    for cmd, result in zip(commands, results, strict=True):
        if _transient(result):
            raise result
        if isinstance(result, LedgerError) and not isinstance(result, InvalidState | NotFound):
            log.warning("%s for %s refused: %s", type(cmd).__name__, cmd.account_id, result.detail)


def _pausing_hour(cmd: c.Command) -> TypeGuard[c.ChargeDeploymentHour]:
    return isinstance(cmd, c.ChargeDeploymentHour) and cmd.pause_if_unpaid


async def check_alerts(account_id: str, attribution: dict[str, Any] | None = None) -> None:
    """Raise the account's due alerts (each once per period and threshold)."""
    ledger = await context().ledger()
    await ledger.raise_due_alerts(account_id, Attribution(**attribution) if attribution else None)


async def pause_for_debt(account_id: str) -> None:
    """Pause the account's running deployments while it is in debt."""
    ledger = await context().ledger()
    result = (await ledger.execute_many([c.PauseForDebt(account_id=account_id)]))[0]
    if _transient(result):
        raise result


async def auto_refill(account_id: str, crossing: int) -> None:
    """Charge the refill of one crossing below the threshold (``charge_refill``: once, however
    often it runs). An outage of Stripe or the database raises, and Dramatiq retries."""
    ctx = context()
    ledger = await ctx.ledger()
    try:
        result = await charge_refill(ledger, ctx.stripe(), account_id, crossing)
    except PaymentProviderNotConfigured as exc:  # a retry cannot help: say so once
        log.error("auto-refill of %s not charged: %s", account_id, exc.detail)
        return
    log.info("auto-refill of %s crossing %d: %s %s", account_id, crossing, result.status, result.detail)


async def auto_refill_runout(account_id: str) -> None:
    """Refill if the forecast says the balance runs out within the account's ``runout_hours``."""
    ctx = context()
    ledger = await ctx.ledger()
    try:
        result = await refill_if_running_out(ledger, ctx.stripe(), account_id)
    except PaymentProviderNotConfigured as exc:
        log.error("auto-refill of %s not charged: %s", account_id, exc.detail)
        return
    log.info("auto-refill forecast of %s: %s %s", account_id, result.status, result.detail)


async def deliver_webhook(account_id: str, endpoint_id: str, event_id: str, attempt: int | None = None) -> None:
    """POST one event to one endpoint, signed. After a failure the next attempt goes back to the
    broker as a delayed message; PostgreSQL keeps its schedule, so if the broker loses it the
    scheduler's sweep sends it when due (``workers/webhooks.py``)."""
    ctx = context()
    ledger = await ctx.ledger()
    result = await webhooks.deliver(ledger, ctx, account_id, endpoint_id, event_id, attempt)
    if result.retry is not None and result.delay is not None and ctx.send_delivery is not None:
        try:
            await asyncio.to_thread(ctx.send_delivery, result.retry, result.delay)
        except Exception as exc:  # the row is due all the same: the sweep sends it
            log.warning("webhook retry not queued (%s: %s); the scheduler sends it when due", type(exc).__name__, exc)


async def record_usage(events: list[dict[str, Any]]) -> None:
    """Queue intake for producers: the same outcome and idempotency as ``POST /v1/usage``.

    A ``failed`` item (or the whole batch ``Unavailable``) raises, so Dramatiq retries the
    message with backoff: the recorded items replay by key, the failed ones run. A ``rejected``
    item is final and only logged: retrying it would be refused the same way.
    """
    ledger = await context().ledger()
    results = await intake.record_usage(ledger, events)
    for r in results:
        if r.status == "rejected" and r.error is not None:
            log.warning("usage item %s rejected: %s", r.idempotency_key, r.error.detail)
    failed = next((r.error for r in results if r.status == "failed"), None)
    if failed is not None:
        raise failed


@dataclass(frozen=True)
class Actors:
    execute_commands: dramatiq.Actor[Any, Any]
    check_alerts: dramatiq.Actor[Any, Any]
    pause_for_debt: dramatiq.Actor[Any, Any]
    deliver_webhook: dramatiq.Actor[Any, Any]
    record_usage: dramatiq.Actor[Any, Any]
    auto_refill: dramatiq.Actor[Any, Any]
    auto_refill_runout: dramatiq.Actor[Any, Any]


def declare(broker: Broker, *, webhook_max_retries: int = 12, webhook_min_backoff_ms: int = 10_000,
            webhook_max_backoff_ms: int = 6 * 3600 * 1000) -> Actors:
    """Register the actors on ``broker``."""

    def actor(fn: Any, queue: str, **options: Any) -> dramatiq.Actor[Any, Any]:
        declared: dramatiq.Actor[Any, Any] = dramatiq.actor(
            broker=broker, actor_name=fn.__name__, queue_name=queue, **options)(fn)
        return declared

    return Actors(
        execute_commands=actor(execute_commands, "ledger", max_retries=20, min_backoff=500, max_backoff=60_000),
        check_alerts=actor(check_alerts, "alerts", max_retries=10, min_backoff=500, max_backoff=60_000),
        pause_for_debt=actor(pause_for_debt, "ledger", max_retries=20, min_backoff=500, max_backoff=60_000),
        deliver_webhook=actor(deliver_webhook, "webhooks", max_retries=webhook_max_retries,
                              min_backoff=webhook_min_backoff_ms, max_backoff=webhook_max_backoff_ms),
        record_usage=actor(record_usage, "usage", max_retries=20, min_backoff=500, max_backoff=60_000),
        auto_refill=actor(auto_refill, "payments", max_retries=20, min_backoff=1000, max_backoff=300_000),
        auto_refill_runout=actor(auto_refill_runout, "payments", max_retries=20, min_backoff=1000,
                                 max_backoff=300_000),
    )


def relay_sender(actors: Actors) -> Any:
    """The relay's ``send``: one message per alert check, debt pause, webhook delivery and refill."""
    from workers.relay import Plan

    def send(p: Plan) -> None:
        for (account_id, _, _, _), attribution in p.alerts.items():
            actors.check_alerts.send(account_id, attribution)
        for account_id in sorted(p.debtors):
            actors.pause_for_debt.send(account_id)
        for account_id, endpoint_id, event_id in p.deliveries:
            actors.deliver_webhook.send(account_id, endpoint_id, event_id, 0)  # registered with 0 attempts
        for account_id, crossing in p.refills:
            actors.auto_refill.send(account_id, crossing)
        for account_id in sorted(p.runouts):
            actors.auto_refill_runout.send(account_id)

    return send


def delivery_sender(actors: Actors) -> Callable[[webhooks.Due, timedelta], None]:
    """Hands one delivery attempt to the broker, after ``delay`` (the sweep's, and retries)."""

    def send(d: webhooks.Due, delay: timedelta = timedelta(0)) -> None:
        ms = int(delay.total_seconds() * 1000)
        actors.deliver_webhook.send_with_options(args=(d.account_id, d.endpoint_id, d.event_id, d.attempt),
                                                 delay=ms or None)

    return send
