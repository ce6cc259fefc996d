"""Rate-card versions in the database: a ledger with none loaded starts on the shipped sample."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from ledger.db import make_engine, migrate
from ledger.rate_cards import ensure_rate_card
from ledger.rates import sample_rate_card


async def test_a_database_with_no_card_is_given_the_shipped_sample(empty_database_url: str) -> None:
    # Not a copy of the test template: that one holds the test suite's frozen card already.
    await asyncio.to_thread(migrate, empty_database_url)
    engine = make_engine(empty_database_url, pool_size=1)
    try:
        card = await ensure_rate_card(engine)
        assert card.model_dump() == sample_rate_card().model_dump()
        assert await ensure_rate_card(engine) == card  # found, not loaded twice
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT version, source FROM rate_cards"))).all()
        assert rows == [(card.version, "sample")]
    finally:
        await engine.dispose()
