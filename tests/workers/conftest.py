"""Fixtures for the workers: a real broker on Redis (its own namespace per test), an in-process
Dramatiq worker whose actors open their own ledger on a fresh database, and a shared clock."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.clock import ManualClock
from ledger.db import make_engine
from ledger.rate_cards import ensure_rate_card
from ledger.service import Ledger
from ledger.settings import Settings
from tests.ledger.conftest import T0
from workers.runner import Background


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def settings(fresh_database_url: str, redis_url: str) -> Settings:
    return Settings(database_url=fresh_database_url, redis_url=redis_url, webhook_allow_private=True,
                    broker_namespace=f"credits-test-{secrets.token_hex(4)}",
                    webhook_min_backoff_ms=100, webhook_max_backoff_ms=300, webhook_max_retries=3,
                    relay_idle_s=0.05)


@pytest.fixture
def background(settings: Settings, clock: ManualClock) -> Iterator[Background]:
    """A broker with the actors declared (queues in a namespace of this test's own)."""
    bg = Background(settings, clock=clock)
    try:
        yield bg
    finally:
        bg.close()


@pytest_asyncio.fixture(loop_scope="session")
async def wengine(fresh_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(fresh_database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def wledger(wengine: AsyncEngine, clock: ManualClock) -> AsyncIterator[Ledger]:
    """The test's own ledger on the workers' database (the actors open another, on their loop)."""
    service = Ledger(wengine, clock, await ensure_rate_card(wengine))
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


def drain(bg: Background, timeout_ms: int = 30_000) -> None:
    """Wait until every queue is empty and the worker has finished what it took."""
    for queue in sorted(bg.broker.get_declared_queues()):
        if isinstance(bg.broker, RedisBroker):
            bg.broker.join(queue, timeout=timeout_ms, interval=10)
        else:
            bg.broker.join(queue, timeout=timeout_ms)
    assert bg.worker is not None
    bg.worker.join()
