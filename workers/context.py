"""What actors run against in a worker process: one ledger, opened lazily on the actors' loop.

Async actors run on Dramatiq's event-loop thread; the ledger (engine pool, group-commit writer)
must live on that loop, so it is opened by the first actor that needs it and closed by the
``LedgerContext`` middleware when the worker shuts down. Nothing is opened at import time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

from dramatiq import Broker, Worker
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import Middleware

from ledger.billing.gateway import StripeGateway
from ledger.bootstrap import open_ledger
from ledger.clock import Clock, SystemClock
from ledger.service import Ledger
from ledger.settings import Settings
from workers.webhooks import Due, Schedule

log = logging.getLogger(__name__)


class WorkerContext:
    """The settings, clock and (once opened) ledger that this process's actors share."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None, ledger: Ledger | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self._ledger = ledger
        self._owned = ledger is None
        self._stack: AsyncExitStack | None = None
        self._lock: asyncio.Lock | None = None
        self.http: Any = None
        self.webhook_schedule = Schedule.of(settings)
        #: Hands a delivery's next attempt to the broker, delayed (set with the actors).
        self.send_delivery: Callable[[Due, timedelta], None] | None = None
        self._stripe: StripeGateway | None = None

    def stripe(self) -> StripeGateway:
        """Stripe, as the settings configure it (built on first use)."""
        if self._stripe is None:
            self._stripe = StripeGateway.from_settings(self.settings)
        return self._stripe

    async def ledger(self) -> Ledger:
        """The process's ledger, opened on first use (on the calling loop)."""
        if self._ledger is not None:
            return self._ledger
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._ledger is None:
                stack = AsyncExitStack()
                self._ledger = await stack.enter_async_context(open_ledger(self.settings, clock=self.clock))
                self._stack = stack
        return self._ledger

    async def close(self) -> None:
        """Drain the writer and close the pool (only what this context opened)."""
        if self.http is not None:
            await self.http.aclose()
            self.http = None
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
            self._ledger = None


_current: WorkerContext | None = None


def set_context(ctx: WorkerContext | None) -> None:
    global _current
    _current = ctx


def context() -> WorkerContext:
    if _current is None:
        raise RuntimeError("no worker context: call workers.context.set_context() before starting a worker")
    return _current


class LedgerContext(Middleware):
    """Closes the process's ledger on worker shutdown, on the actors' loop, before it stops."""

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        loop_thread = get_event_loop_thread()
        if _current is not None and _current._owned and loop_thread is not None:
            try:
                loop_thread.run_coroutine(_current.close())
            except Exception:  # shutting down: report, never hang the exit
                log.exception("closing the worker's ledger failed")
