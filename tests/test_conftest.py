"""The fixtures' own housekeeping."""

from __future__ import annotations

import asyncio
import socket
import sys

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from ledger.db import to_async_url
from tests.conftest import admin_execute, create_database, drop_orphaned_databases


async def _exists(server_url: str, name: str) -> bool:
    engine = create_async_engine(to_async_url(server_url), poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            query = text("SELECT 1 FROM pg_database WHERE datname = :n")
            return bool(await conn.scalar(query, {"n": name}))
    finally:
        await engine.dispose()


async def test_databases_of_dead_sessions_are_dropped(server_url: str) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await proc.wait()  # its pid now names no process
    orphan = await create_database(server_url, "credits_empty")
    await admin_execute(
        server_url,
        f"COMMENT ON DATABASE \"{orphan}\" IS "
        f"'credit-ledger tests: {socket.gethostname()} {proc.pid}'",
    )
    live = await create_database(server_url, "credits_empty")
    try:
        dropped = await drop_orphaned_databases(server_url)
        assert orphan in dropped
        assert live not in dropped
        assert not await _exists(server_url, orphan)
        assert await _exists(server_url, live)
    finally:
        await admin_execute(
            server_url,
            f'DROP DATABASE IF EXISTS "{orphan}" WITH (FORCE)',
            f'DROP DATABASE IF EXISTS "{live}" WITH (FORCE)',
        )
