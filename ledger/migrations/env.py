"""Alembic environment: migrations run on the async engine, one transaction, one migrator."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from ledger.db import connect_args, to_async_url
from ledger.schema import metadata

config = context.config
target_metadata = metadata

# Any constant works; it only has to be the same for every process that migrates.
_MIGRATION_LOCK_ID = 0x6C6564676572  # "ledger"


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: use ledger.db.migrate(url)")
    return str(url)


def run_migrations_offline() -> None:
    """Emit the SQL instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=to_async_url(_url()),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        # Two processes starting at once (say, API and worker) would otherwise both see an
        # empty alembic_version and race to create the same tables; the second now waits and
        # then finds the schema at head.
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_async_engine(
        to_async_url(_url()), poolclass=pool.NullPool, connect_args=connect_args()
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    # A caller may hand over its own (sync facade of a) connection, e.g. inside run_sync.
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
