"""URLs, the engine, and running migrations from code."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from ledger.db import head_revision, make_engine, migrate, to_async_url
from tests.cards import frozen_rate_card

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql://u:p%40ss@h/db", "postgresql+asyncpg://u:p%40ss@h/db"),
        ("postgresql://u@h/db?sslmode=require", "postgresql+asyncpg://u@h/db?ssl=require"),
        (
            "postgresql://postgres:@/credits?host=/tmp/pg",
            "postgresql+asyncpg://postgres:@/credits?host=%2Ftmp%2Fpg",
        ),
    ],
)
def test_to_async_url(url: str, expected: str) -> None:
    assert to_async_url(url) == expected


def test_to_async_url_refuses_other_databases() -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        to_async_url("mysql://u@h/db")


async def test_engine_names_its_sessions(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            name = await conn.scalar(text("SELECT current_setting('application_name')"))
    finally:
        await engine.dispose()
    assert name == "credit-ledger"


async def test_migrate_from_inside_the_event_loop_and_concurrently(
    empty_database_url: str,
) -> None:
    # Straight from a coroutine: Alembic's asyncio.run() must not meet this running loop.
    migrate(empty_database_url)
    # Again, three at once in this process: idempotent, and they must not share Alembic's
    # global context.
    await asyncio.gather(*(asyncio.to_thread(migrate, empty_database_url) for _ in range(3)))

    engine = make_engine(empty_database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT version_num FROM alembic_version")) == head_revision() == "0011"
    finally:
        await engine.dispose()


async def test_concurrent_first_migrations_in_several_processes(empty_database_url: str) -> None:
    # Like an API and a worker starting together on an empty database.
    script = "import sys; from ledger.db import migrate; migrate(sys.argv[1])"
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, empty_database_url, cwd=REPO_ROOT,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    results = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 120)
    assert [p.returncode for p in procs] == [0] * 4, [err.decode() for _, err in results]

    engine = make_engine(empty_database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM alembic_version")) == 1
            assert await conn.scalar(text("SELECT to_regclass('events') IS NOT NULL"))
    finally:
        await engine.dispose()


async def test_a_burst_wider_than_the_pool_waits_instead_of_opening_sessions(fresh_database_url: str) -> None:
    """The pool is a hard cap: 30 concurrent readers on a pool of 4 share 4 sessions. With overflow
    connections each burst opened and closed PostgreSQL sessions, ~0.6 cores of churn under load."""
    engine = make_engine(fresh_database_url, pool_size=4)

    async def sessions() -> int:
        async with engine.connect() as conn:
            n: int = await conn.scalar(text(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"))
            return n

    async def read() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_sleep(0.02)"))

    try:
        await read()  # the first session exists before counting
        before = await sessions()
        await asyncio.gather(*(read() for _ in range(30)))
        opened = await sessions() - before
    finally:
        await engine.dispose()
    assert opened <= 3, f"{opened} sessions opened for a burst on a pool of 4"


def test_a_pool_with_no_room_beside_the_writer_is_refused(fresh_database_url: str) -> None:
    from ledger.clock import SystemClock
    from ledger.service import Ledger

    engine = make_engine(fresh_database_url, pool_size=2)
    with pytest.raises(ValueError, match="raise CREDITS_POOL_SIZE"):
        Ledger(engine, SystemClock(), frozen_rate_card(), concurrency=2)
