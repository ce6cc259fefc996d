"""Database URLs, the async engine, and running Alembic migrations from code."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]  # ships no type hints
from alembic import command
from alembic.config import Config
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

_ASYNC_DRIVER = "postgresql+asyncpg"
_POSTGRES_SCHEMES = frozenset(
    {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2", _ASYNC_DRIVER}
)
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
APPLICATION_NAME = "credit-ledger"

T = TypeVar("T")

_migrate_lock = threading.Lock()


def to_async_url(url: str) -> str:
    """Rewrite any PostgreSQL URL (libpq or SQLAlchemy style) for SQLAlchemy's asyncpg driver.

    A unix-socket URL (``postgresql://user:@/db?host=/run/pg``) keeps its ``host`` query
    parameter, which the asyncpg dialect reads as the socket directory.
    """
    parsed = make_url(url)
    if parsed.drivername not in _POSTGRES_SCHEMES:
        raise ValueError(f"not a PostgreSQL URL: {parsed.drivername}://…")
    query = dict(parsed.query)
    # asyncpg.connect() rejects libpq's ``sslmode`` keyword; it takes the same values as ``ssl``.
    if "sslmode" in query:
        query.setdefault("ssl", query.pop("sslmode"))
    return parsed.set(drivername=_ASYNC_DRIVER, query=query).render_as_string(
        hide_password=False
    )


def with_database(url: str, name: str) -> str:
    """``url`` naming database ``name`` on the same server (same driver, credentials, socket)."""
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def recreate_database(server_url: str, name: str) -> str:
    """Drop database ``name`` on ``server_url``'s server (ending its sessions) and create it
    empty; return its URL. Run through ``server_url``'s own database, which must not be ``name``."""
    if make_url(server_url).database == name:
        raise ValueError(f"cannot recreate {name!r} through a connection to itself")
    engine = create_async_engine(to_async_url(server_url), isolation_level="AUTOCOMMIT", poolclass=NullPool,
                                 connect_args=connect_args())
    quoted = '"' + name.replace('"', '""') + '"'
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
            await conn.execute(text(f"CREATE DATABASE {quoted}"))
    finally:
        await engine.dispose()
    return with_database(server_url, name)


def make_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    """An async engine on asyncpg for ``url`` (any PostgreSQL URL form): ``pool_size`` connections, no more."""
    return create_async_engine(
        to_async_url(url),
        pool_size=pool_size,
        # No overflow: an overflow connection is closed as soon as it is handed back to a full
        # pool, so any burst wider than the pool opened and closed a PostgreSQL session per
        # request (a fork, authentication, cold catalog caches, re-prepared statements), which
        # under concurrent balance reads cost more than queueing does (docs/benchmarks.md, "At
        # `89d8ffd`"); callers now queue for a connection.
        max_overflow=0,
        # Named in pg_stat_activity so operators can tell the ledger's sessions apart.
        # asyncpg's prepared-statement cache stays at its default (on): the hot path repeats a
        # handful of statements. Behind PgBouncer in transaction mode it would have to be 0.
        connect_args=connect_args(),
    )


#: What asyncpg raises when the server is down, shutting down, or gone mid-request.
_OUTAGES = (OSError, sa_exc.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError,
            asyncpg.exceptions.TooManyConnectionsError)


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database cannot be reached right now: refused,
    reset, timed out, shutting down, or the connection lost mid-request. An outage to retry, not a bug."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, _OUTAGES) or (isinstance(cause, sa_exc.DBAPIError) and cause.connection_invalidated):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def connect_args() -> dict[str, Any]:
    """asyncpg ``connect()`` arguments shared by every engine the ledger opens."""
    return {"server_settings": {"application_name": APPLICATION_NAME}}


def alembic_config(url: str) -> Config:
    """An Alembic config for the packaged migrations, without any alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Handed over as an attribute, not a main option: ConfigParser would choke on the ``%``
    # of a percent-encoded password or socket path.
    config.attributes["url"] = url
    return config


def head_revision() -> str:
    """The newest migration this package ships."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_current_head()
    assert head is not None
    return head


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (Alembic ``upgrade head``).

    Blocking. Safe to call from the CLI, through ``asyncio.to_thread``, and even straight from
    a thread that is running an event loop (Alembic's async env then runs on its own thread).
    Concurrent callers, in this process or others, are serialised.
    """
    config = alembic_config(url)
    # Alembic installs its migration context in a module-level proxy, so two migrations in
    # one process must not overlap (they would run on each other's connections and deadlock
    # on the advisory lock). Across processes the advisory lock in env.py does the job.
    with _migrate_lock:
        run_without_loop(lambda: command.upgrade(config, "head"))


def run_without_loop(fn: Callable[[], T]) -> T:
    """Call ``fn`` on a thread with no running event loop, so it may use ``asyncio.run``.

    Runs ``fn`` right here when this thread has no loop; otherwise on a helper thread, joined.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()

    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # re-raised on the caller's thread below
            error.append(exc)

    thread = threading.Thread(target=target, name="credit-ledger-sync", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
