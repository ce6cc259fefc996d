"""The embedded default: private PostgreSQL and Redis that need nothing installed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import redis
from sqlalchemy import text

from ledger.db import make_engine
from ledger.embedded import (
    resolve_urls,
    start_embedded_postgres,
    start_embedded_redis,
    stop_embedded_postgres,
)
from ledger.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "pg" / "postmaster.pid").read_text().splitlines()[0])


async def _start_in_another_process(data_dir: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from pathlib import Path; from ledger.embedded import *; "
        "print(start_embedded_postgres(Path(sys.argv[1])))",
        str(data_dir),
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,  # so `ledger` imports even without an install
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0
    return out.decode().strip()


async def test_embedded_postgres_is_reused_and_answers(tmp_path: Path) -> None:
    # The first start happens in another process, like a previous `credits demo`.
    first = await _start_in_another_process(tmp_path)
    try:
        pid = _postmaster_pid(tmp_path)
        second = await asyncio.to_thread(start_embedded_postgres, tmp_path)
        third = await asyncio.to_thread(start_embedded_postgres, tmp_path)
        assert first == second == third
        assert _postmaster_pid(tmp_path) == pid  # reused, not restarted

        engine = make_engine(second, pool_size=1)
        try:
            async with engine.connect() as conn:
                assert await conn.scalar(text("SELECT current_database()")) == "credits"
                assert await conn.scalar(text("SELECT 6 * 7")) == 42
        finally:
            await engine.dispose()
    finally:
        await asyncio.to_thread(stop_embedded_postgres, tmp_path)
    assert not (tmp_path / "pg" / "postmaster.pid").exists()


async def test_stop_reaches_a_server_another_process_started(tmp_path: Path) -> None:
    await _start_in_another_process(tmp_path)
    assert (tmp_path / "pg" / "postmaster.pid").exists()
    await asyncio.to_thread(stop_embedded_postgres, tmp_path)
    assert not (tmp_path / "pg" / "postmaster.pid").exists()
    await asyncio.to_thread(stop_embedded_postgres, tmp_path)  # already stopped: no-op


async def test_start_from_inside_the_event_loop(tmp_path: Path) -> None:
    # Called straight from a coroutine (blocking, but it must not trip over the running loop).
    url = start_embedded_postgres(tmp_path)
    try:
        assert "/credits?" in url
    finally:
        stop_embedded_postgres(tmp_path)


def test_embedded_redis_answers_ping(tmp_path: Path) -> None:
    url = start_embedded_redis(tmp_path)
    assert url.startswith("unix://")
    assert start_embedded_redis(tmp_path) == url
    client = redis.Redis.from_url(url)
    try:
        assert client.ping() is True
        assert client.set("credits:test", "1") is True
    finally:
        client.close()


def test_resolve_urls_prefers_configured_servers(tmp_path: Path) -> None:
    configured = Settings(
        DATABASE_URL="postgresql://db.example/credits",
        REDIS_URL="redis://cache.example/0",
        data_dir=tmp_path,
    )
    assert resolve_urls(configured, need_redis=True) == (
        "postgresql://db.example/credits",
        "redis://cache.example/0",
    )
    # Nothing embedded was started for it.
    assert list(tmp_path.iterdir()) == []
