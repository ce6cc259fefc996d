"""Running a ``credits`` command: its event loop, its expected failures, the database it opens.

Expected failures (a ``LedgerError``, bad input, an unreachable database) print one
``error: ...`` line on stderr and exit 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.bootstrap import database_url
from ledger.db import make_engine, to_async_url
from ledger.db import migrate as run_migrations
from ledger.errors import InvalidRequest, LedgerError
from ledger.settings import load_settings

T = TypeVar("T")


def fail(detail: str) -> NoReturn:
    """Print one ``error:`` line on stderr and exit 1."""
    typer.echo(f"error: {' '.join(detail.split())}", err=True)
    raise typer.Exit(1)


def validation_detail(exc: ValidationError) -> str:
    """The first problem of a pydantic error, as ``field: message``."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; expected failures become one ``error:`` line and exit 1."""
    try:
        return asyncio.run(_checked(coro))
    except LedgerError as exc:
        fail(exc.detail)
    except ValidationError as exc:
        fail(validation_detail(exc))
    except (DBAPIError, OSError) as exc:
        # Connection refused, bad credentials, no such database: the environment, not a bug.
        # Any other database error is one, and keeps its traceback.
        if isinstance(exc, DBAPIError) and not _unreachable(exc):
            raise
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        fail(f"cannot use the database: {reason}")


#: SQLSTATE classes of "could not get a usable session": connection, authorization, unknown
#: database, too many connections, server starting up or shutting down.
_UNREACHABLE = ("08", "28", "3D", "53", "57P")


def _unreachable(exc: DBAPIError) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    return isinstance(sqlstate, str) and sqlstate.startswith(_UNREACHABLE)


async def _checked(coro: Coroutine[Any, Any, T]) -> T:
    settings = load_settings()
    if settings.database_url is not None:
        try:
            to_async_url(settings.database_url)
        except ValueError as exc:
            coro.close()
            raise InvalidRequest(f"DATABASE_URL: {exc}") from None
    return await coro


@asynccontextmanager
async def open_engine(url: str | None = None) -> AsyncIterator[AsyncEngine]:
    """An engine on the migrated database, without the writer (for read-only commands)."""
    if url is None:
        url = await asyncio.to_thread(database_url, load_settings())
    await asyncio.to_thread(run_migrations, url)
    engine = make_engine(url, pool_size=2)
    try:
        yield engine
    finally:
        await engine.dispose()
