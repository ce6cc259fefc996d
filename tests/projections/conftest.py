"""Fixtures for the read models: a database of their own per test (projectors' checkpoints are
per database), a started ledger on it, and a helper that opens accounts."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.db import make_engine
from ledger.rate_cards import ensure_rate_card
from ledger.service import Ledger

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

OpenAccount = Callable[..., Awaitable[str]]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest_asyncio.fixture(loop_scope="session")
async def engine(fresh_database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a database of this test's own (an empty log, no checkpoints)."""
    engine = make_engine(fresh_database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def ledger(engine: AsyncEngine, clock: ManualClock) -> AsyncIterator[Ledger]:
    service = Ledger(engine, clock, await ensure_rate_card(engine))
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


@pytest.fixture
def open_account(ledger: Ledger) -> OpenAccount:
    """Open a uniquely named account holding ``credits_ucr`` of purchased credits (and its signup credits)."""

    async def _open(*, plan: str = "free", credits_ucr: int = 0, prefix: str = "acct") -> str:
        account_id = f"{prefix}-{secrets.token_hex(6)}"
        await ledger.execute(c.OpenAccount(account_id=account_id, name=account_id, plan=plan))
        if credits_ucr:
            await ledger.execute(c.GrantCredits(account_id=account_id, amount_ucr=credits_ucr, source="purchase",
                                                reason="test"))
        return account_id

    return _open
