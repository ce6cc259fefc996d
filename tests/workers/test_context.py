"""The worker process's ledger follows the rate card: a version loaded meanwhile (by another
process, ``credits rates load``) prices the usage its actors record within ``CREDITS_RATES_CHECK_S``."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text

from ledger import commands as c
from ledger.rates import RateCard
from ledger.service import Ledger
from ledger.settings import Settings
from tests.workers.conftest import drain
from workers.runner import Background


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"rates_check_s": 0.2})


async def priced_with(ledger: Ledger, key: str) -> str:
    async with ledger.engine.connect() as conn:
        version: str = (await conn.execute(text(
            "SELECT data->>'rate_card_version' FROM events WHERE idempotency_key = :k AND type = 'UsageMetered'"),
            {"k": key})).scalar_one()
    return version


async def test_a_running_worker_prices_with_a_card_loaded_meanwhile(background: Background, wledger: Ledger) -> None:
    await wledger.execute(c.OpenAccount(account_id="reload", name="reload", plan="team"))
    old = wledger.card.version
    background.start_worker(threads=2)

    def meter(key: str) -> None:
        background.actors.record_usage.send([{"account_id": "reload", "operation": "email", "quantity": 1,
                                              "idempotency_key": key}])
        drain(background)

    await asyncio.to_thread(meter, "before")
    assert await priced_with(wledger, "before") == old

    # Another process loads a new version; the worker is not told.
    new = RateCard.model_validate({**wledger.card.model_dump(), "version": f"{old}-reload"})
    assert await wledger.load_rates(new, "test")

    # It looks every 0.2 s; the deadline is only there so a worker that never looks fails.
    deadline = time.monotonic() + 30
    for n in range(10_000):
        await asyncio.to_thread(meter, f"after-{n}")
        if await priced_with(wledger, f"after-{n}") == new.version:
            break
        assert time.monotonic() < deadline, "the running worker still prices with the old rate card"
        await asyncio.sleep(0.05)
