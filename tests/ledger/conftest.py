"""Fixtures for the write side: a manual clock, a started ``Ledger``, and fresh accounts."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.rate_cards import ensure_rate_card
from ledger.rates import RateCard
from ledger.service import Ledger
from ledger.store import Result

#: Every test starts at the same instant unless it moves its clock.
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

OpenAccount = Callable[..., Awaitable[str]]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def rate_card(engine: AsyncEngine) -> RateCard:
    """The test suite's frozen card (``tests/data/rates.toml``), the session database's current version."""
    return await ensure_rate_card(engine)


@pytest_asyncio.fixture(loop_scope="session")
async def ledger(engine: AsyncEngine, clock: ManualClock, rate_card: RateCard) -> AsyncIterator[Ledger]:
    """A started ledger on the session database, driven by ``clock``."""
    service = Ledger(engine, clock, rate_card)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


@pytest.fixture
def open_account(ledger: Ledger) -> OpenAccount:
    """Open a uniquely named account on ``plan``; ``credits_ucr`` > 0 adds a purchase grant.

    With ``plain`` (the default) the plan's signup credits are burned first, so the account
    holds exactly ``credits_ucr``; ``plain=False`` keeps them.
    """

    async def _open(*, plan: str = "free", credits_ucr: int = 0, plain: bool = True, prefix: str = "acct") -> str:
        account_id = f"{prefix}-{secrets.token_hex(6)}"
        await ledger.execute(c.OpenAccount(account_id=account_id, name=account_id, plan=plan))
        if plain:
            # Burn the signup credits so the account holds exactly what the test grants.
            signup = (await ledger.balance(account_id)).balance_ucr
            if signup:
                await ledger.execute(c.Meter(account_id=account_id, operation="email", quantity=signup // 1000))
        if credits_ucr:
            await ledger.execute(c.GrantCredits(account_id=account_id, amount_ucr=credits_ucr, source="purchase",
                                                reason="test"))
        return account_id

    return _open


@pytest_asyncio.fixture(loop_scope="session")
async def single(engine: AsyncEngine, clock: ManualClock, rate_card: RateCard) -> AsyncIterator[Ledger]:
    """A ledger with one writer loop: commands handed over together share one batch."""
    service = Ledger(engine, clock, rate_card, concurrency=1)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def contending_writers(engine: AsyncEngine, clock: ManualClock,
                             rate_card: RateCard) -> AsyncIterator[list[Ledger]]:
    """Four more ledgers running each command in its own transaction on three loops: many
    transactions contend for the same account (and the same idempotency key) at once."""
    ledgers = [Ledger(engine, clock, rate_card, max_batch=1, concurrency=3) for _ in range(4)]
    for service in ledgers:
        await service.start()
    try:
        yield ledgers
    finally:
        for service in ledgers:
            await service.stop()


async def one_batch(service: Ledger, commands: Sequence[c.Command]) -> list[Result]:
    """Run ``commands`` as one ``execute_many`` and check they shared one transaction."""
    results = await service.execute_many(commands)
    assert service.writer.batch_sizes[-1] == len(commands), "the commands did not share one batch"
    return results
