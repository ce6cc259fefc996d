"""Running the background side: a Dramatiq worker, the relay and the scheduler, alone or together.

``Background`` wires one broker, its actors and this process's worker context (the composition
root of the workers); ``credits worker``, ``credits scheduler`` and ``credits serve`` start the
parts they need from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from dramatiq import Broker, Worker

from ledger.clock import Clock
from ledger.service import Ledger
from ledger.settings import Settings
from workers.actors import Actors, declare, delivery_sender, relay_sender
from workers.broker import broker_url, make_broker
from workers.context import LedgerContext, WorkerContext, set_context
from workers.relay import AlertScreen, Relay
from workers.scheduler import Scheduler

log = logging.getLogger(__name__)


class Background:
    """One broker with the actors declared, and this process's worker context."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None, url: str | None = None) -> None:
        self.settings = settings
        self.broker: Broker = make_broker(
            url or broker_url(settings), extra=[LedgerContext()], namespace=settings.broker_namespace,
            heartbeat_timeout_ms=settings.broker_heartbeat_timeout_ms,
            maintenance_chance=settings.broker_maintenance_chance)
        self.actors: Actors = declare(
            self.broker, webhook_max_retries=settings.webhook_max_retries,
            webhook_min_backoff_ms=settings.webhook_min_backoff_ms,
            webhook_max_backoff_ms=settings.webhook_max_backoff_ms)
        self.context = WorkerContext(settings, clock=clock)
        self.context.send_delivery = delivery_sender(self.actors)
        set_context(self.context)
        self.worker: Worker | None = None

    def start_worker(self, threads: int | None = None) -> Worker:
        """Start consuming every queue in background threads."""
        self.worker = Worker(self.broker, worker_threads=threads or self.settings.worker_threads,
                             worker_timeout=100)
        self.worker.start()
        return self.worker

    def stop_worker(self) -> None:
        """Finish the messages in hand (their commands commit), then stop."""
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def relay(self, ledger: Ledger) -> Relay:
        return Relay(ledger.engine, relay_sender(self.actors),
                     screen=AlertScreen(ledger.clock, lambda: ledger.card), clock=ledger.clock,
                     delivery_lease=self.context.webhook_schedule.queue_lease)

    def scheduler(self, ledger: Ledger, clock: Clock | None = None) -> Scheduler:
        return Scheduler(ledger, self.actors.execute_commands.send, clock, deliver=delivery_sender(self.actors),
                         webhook_schedule=self.context.webhook_schedule)

    def close(self) -> None:
        self.stop_worker()
        self.broker.close()
        set_context(None)


@contextlib.asynccontextmanager
async def background_tasks(bg: Background, ledger: Ledger, *, relay: bool = True,
                           scheduler: bool = True) -> AsyncIterator[list[asyncio.Task[Any]]]:
    """Run the relay and the scheduler on the current loop (with ``ledger``) until the block ends."""
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    if relay:
        tasks.append(asyncio.create_task(bg.relay(ledger).run(stop, idle_s=bg.settings.relay_idle_s),
                                         name="relay"))
    if scheduler:
        tasks.append(asyncio.create_task(bg.scheduler(ledger).run(stop, bg.settings.scheduler_interval_s),
                                         name="scheduler"))
    try:
        yield tasks
    finally:
        stop.set()
        for task in tasks:
            try:
                await asyncio.wait_for(task, timeout=30)
            except Exception:
                log.exception("background task %s did not stop cleanly", task.get_name())
