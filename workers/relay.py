"""The relay: reads the event log in order from its checkpoint and enqueues what must follow.

The log is the outbox: a command commits its events and nothing else, and the relay derives the
follow-ups (alert checks, debt pauses, webhook deliveries) afterwards. The checkpoint lives in
PostgreSQL and moves only after the messages of a batch were handed to the broker, so when
Redis is down nothing is lost: the relay stalls, and catches up when the broker returns. A
message may go out twice (enqueued, then the checkpoint save failed): every actor is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.events import (
    CreditsReserved,
    Event,
    GrantExpired,
    RefundIssued,
    UsageMetered,
)
from ledger.log import LogEntry, load_checkpoint, read_log, save_checkpoint
from workers.webhooks import wants

log = logging.getLogger(__name__)

CHECKPOINT = "relay"
#: A session-level advisory lock: one relay reads at a time (a second one waits as a standby).
RELAY_LOCK = 0x6C65646765720001

#: Events after which the account's alerts are checked: spend, holds, and credits lost.
_ALERTING = (UsageMetered, CreditsReserved, GrantExpired, RefundIssued)


@dataclass
class Plan:
    """The messages one batch of the log calls for."""

    alerts: dict[tuple[str, str | None, str | None, str | None], dict[str, Any] | None] = field(default_factory=dict)
    debtors: set[str] = field(default_factory=set)
    deliveries: list[tuple[str, str, str]] = field(default_factory=list)


def plan(entries: list[LogEntry], endpoints: dict[str, list[tuple[str, list[str] | None]]]) -> Plan:
    """What follows from ``entries`` (pure): one alert check per account and subject, pauses, webhooks."""
    out = Plan()
    for entry in entries:
        e: Event = entry.event
        if isinstance(e, _ALERTING):
            attribution = e.attribution if isinstance(e, UsageMetered) else None
            key = (e.account_id, attribution.agent if attribution else None,
                   attribution.member if attribution else None, attribution.run if attribution else None)
            out.alerts[key] = (attribution.model_dump(exclude_none=True) or None) if attribution else None
        if isinstance(e, UsageMetered) and e.debt_added_ucr > 0:
            out.debtors.add(e.account_id)
        for endpoint_id, types in endpoints.get(e.account_id, ()):
            if wants(types, e.type):
                out.deliveries.append((e.account_id, endpoint_id, str(e.event_id)))
    return out


Send = Callable[[Plan], None]


class Relay:
    """Reads the log from the ``relay`` checkpoint; hands each batch's messages to ``send``."""

    def __init__(self, engine: AsyncEngine, send: Send, *, batch: int = 1000) -> None:
        self.engine = engine
        self.send = send
        self.batch = batch

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
        messages = plan(entries, endpoints)
        # Hand over first, then move the checkpoint: a crash in between re-sends, never drops.
        await asyncio.to_thread(self.send, messages)
        async with self.engine.begin() as conn:
            await save_checkpoint(conn, CHECKPOINT, entries[-1].at)
        return len(entries)

    async def run(self, stop: asyncio.Event, *, idle_s: float = 0.2, retry_s: float = 1.0) -> None:  # float-ok
        """Relay until ``stop`` is set; while another relay holds the lease, stand by."""
        while not stop.is_set():
            async with self.engine.connect() as lease:
                held = (await lease.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": RELAY_LOCK})).scalar()
                await lease.commit()
                if not held:
                    await _sleep(stop, retry_s)
                    continue
                try:
                    while not stop.is_set():
                        try:
                            moved = await self.run_once()
                        except Exception as exc:  # the broker or the database is away: retry, never skip
                            log.warning("relay stalled: %s: %s", type(exc).__name__, exc)
                            await _sleep(stop, retry_s)
                            continue
                        if not moved:
                            await _sleep(stop, idle_s)
                finally:
                    await lease.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": RELAY_LOCK})
                    await lease.commit()


async def _sleep(stop: asyncio.Event, seconds: float) -> None:  # float-ok: a duration
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
