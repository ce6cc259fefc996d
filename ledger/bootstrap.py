"""The composition root: settings -> servers -> migrated database -> engine -> rate card -> ledger.

Entrypoints (CLI, API, workers) call ``open_ledger``; nothing is wired at import time.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ledger.clock import Clock, SystemClock
from ledger.db import make_engine, migrate
from ledger.embedded import resolve_urls
from ledger.rate_cards import ensure_rate_card
from ledger.service import Ledger
from ledger.settings import Settings, load_settings


def database_url(settings: Settings) -> str:
    """``DATABASE_URL``, or the embedded default's (started on first use)."""
    return resolve_urls(settings, need_redis=False)[0]


@asynccontextmanager
async def open_ledger(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    url: str | None = None,
    run_migrations: bool = True,
) -> AsyncIterator[Ledger]:
    """A started ``Ledger`` on a migrated database; stops the writer and the pool on exit."""
    settings = settings or load_settings()
    resolved: str = url if url is not None else await asyncio.to_thread(database_url, settings)
    if run_migrations:
        await asyncio.to_thread(migrate, resolved)
    engine = make_engine(resolved, pool_size=settings.pool_size)
    try:
        card = await ensure_rate_card(engine)
        ledger = Ledger(engine, clock or SystemClock(), card, window_s=settings.batch_window_ms / 1000,
                        max_batch=settings.batch_max, concurrency=settings.writer_concurrency,
                        parallel_at=settings.writer_parallel_at, rates_check_s=settings.rates_check_s)
        await ledger.start()
        # Everything built so far (modules, the rate card, the pool) lives as long as the process:
        # keep the collector from rescanning it, which otherwise shows as write-path pauses.
        gc.freeze()
        try:
            yield ledger
        finally:
            await ledger.stop()
    finally:
        await engine.dispose()
