"""The event log refuses UPDATE, DELETE and TRUNCATE (the trigger from the first migration)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.db import make_engine

INSERT = text(
    """
    INSERT INTO events (account_id, version, event_id, type, schema_version, data,
                        idempotency_key, amount_ucr, balance_after_ucr, occurred_at,
                        recorded_at, hash)
    VALUES (:account_id, 1, :event_id, 'AccountOpened', 1, CAST(:data AS jsonb), NULL, 0, 0,
            :now, :now, :hash)
    """
)
SNAPSHOT = text("SELECT * FROM events ORDER BY position")


@pytest_asyncio.fixture(loop_scope="session")
async def log_engine(fresh_database_url: str) -> AsyncIterator[AsyncEngine]:
    # A database of its own: were the guard broken, TRUNCATE would empty the shared log.
    engine = make_engine(fresh_database_url, pool_size=2)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _snapshot(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(SNAPSHOT)]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET amount_ucr = amount_ucr + 1",
        "UPDATE events SET data = '{}'::jsonb WHERE version = 1",
        "DELETE FROM events",
        "DELETE FROM events WHERE version = 1",
        "TRUNCATE events",
        "TRUNCATE ONLY events RESTART IDENTITY CASCADE",
    ],
)
async def test_events_cannot_be_changed(log_engine: AsyncEngine, statement: str) -> None:
    now = datetime.now(UTC)
    async with log_engine.begin() as conn:
        await conn.execute(
            INSERT,
            {
                "account_id": f"acct-{uuid.uuid4().hex}",
                "event_id": uuid.uuid4(),
                "data": json.dumps({"name": "Ada", "plan": "free"}),
                "now": now,
                "hash": hashlib.sha256(b"genesis").digest(),
            },
        )
    before = await _snapshot(log_engine)
    assert len(before) == 1

    with pytest.raises(DBAPIError, match="append-only"):
        async with log_engine.begin() as conn:
            await conn.execute(text(statement))

    assert await _snapshot(log_engine) == before
