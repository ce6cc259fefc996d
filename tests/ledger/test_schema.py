"""The migrated schema: Citus-ready keys, and exactly what ``ledger.schema`` describes."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import BigInteger, Column, Index, MetaData, Text, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.db import alembic_config, make_engine, migrate
from ledger.rate_cards import ensure_rate_card
from ledger.schema import REFERENCE_TABLES, Xid8, metadata
from ledger.service import Ledger
from ledger.verify import verify
from tests.ledger.conftest import T0

# Every unique index, which is what backs PRIMARY KEY and UNIQUE constraints and what a
# distributed table cannot have unless it contains the distribution column.
UNIQUE_INDEXES = text(
    """
    SELECT t.relname AS table_name,
           i.relname AS index_name,
           x.indisprimary AS is_primary,
           ARRAY(
               SELECT a.attname::text
               FROM unnest(x.indkey) AS k(attnum)
               JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
           ) AS columns
    FROM pg_index x
    JOIN pg_class t ON t.oid = x.indrelid
    JOIN pg_class i ON i.oid = x.indexrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = 'public' AND x.indisunique
    """
)

UNIQUE_CONSTRAINTS = text(
    """
    SELECT t.relname AS table_name, c.conname, c.contype::text
    FROM pg_constraint c
    JOIN pg_class t ON t.oid = c.conrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = 'public' AND c.contype IN ('p', 'u', 'x')
    """
)

TABLES_WITH_COLUMNS = text(
    """
    SELECT t.table_name, array_agg(c.column_name::text) AS columns
    FROM information_schema.tables t
    JOIN information_schema.columns c USING (table_schema, table_name)
    WHERE t.table_schema = 'public' AND t.table_type = 'BASE TABLE'
    GROUP BY t.table_name
    """
)


async def keys_without_account_id(conn: AsyncConnection) -> list[str]:
    """Unique indexes and key constraints of per-account tables that leave out ``account_id``."""
    bad: list[str] = []
    indexes = (await conn.execute(UNIQUE_INDEXES)).all()
    for table_name, index_name, _is_primary, columns in indexes:
        if table_name not in REFERENCE_TABLES and "account_id" not in columns:
            bad.append(f"{table_name}.{index_name} {columns}")
    # Every PRIMARY KEY / UNIQUE / EXCLUDE constraint must have been seen as a unique index
    # (an EXCLUDE constraint has none and is refused outright on a per-account table).
    index_names = {(row.table_name, row.index_name) for row in indexes}
    for table_name, conname, contype in (await conn.execute(UNIQUE_CONSTRAINTS)).all():
        if table_name in REFERENCE_TABLES:
            continue
        if contype == "x" or (table_name, conname) not in index_names:
            bad.append(f"{table_name}.{conname} ({contype})")
    return bad


async def test_every_table_is_known_and_per_account_tables_carry_account_id(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as conn:
        rows = await conn.execute(TABLES_WITH_COLUMNS)
        tables = {row.table_name: set(row.columns) for row in rows}

    assert set(tables) == set(metadata.tables) | {"alembic_version"}
    missing = sorted(
        name for name, columns in tables.items()
        if name not in REFERENCE_TABLES and "account_id" not in columns
    )
    assert missing == []


async def test_primary_keys_and_unique_constraints_include_account_id(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert await keys_without_account_id(conn) == []
        # Guard against the query silently matching nothing.
        names = {row.index_name for row in await conn.execute(UNIQUE_INDEXES)}
    assert {"events_pkey", "events_event_id_key", "accounts_pkey", "grants_pkey"} <= names


async def test_key_check_catches_a_key_without_account_id(fresh_database_url: str) -> None:
    engine = make_engine(fresh_database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("CREATE TABLE bad (account_id text, ref text PRIMARY KEY, alias text UNIQUE)")
            )
            await conn.execute(text("CREATE UNIQUE INDEX bad_ref_idx ON grants (grant_id)"))
            bad = await keys_without_account_id(conn)
    finally:
        await engine.dispose()
    assert sorted(bad) == [
        "bad.bad_alias_key ['alias']",
        "bad.bad_pkey ['ref']",
        "grants.bad_ref_idx ['grant_id']",
    ]


def _diff(connection: Connection, target: MetaData = metadata) -> list[Any]:
    # Teach reflection the xid8 type; left as NullType it would be skipped by the comparison.
    connection.dialect.ischema_names.setdefault("xid8", Xid8)  # type: ignore[attr-defined]
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, target))


async def test_migrated_schema_matches_metadata(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        diffs = await conn.run_sync(_diff)
    # Server defaults are not compared (Alembic's default): PostgreSQL rewrites them
    # (``nextval('events_position_seq'::regclass)``), so they would always differ in text.
    assert diffs == []


async def test_comparison_notices_a_changed_table(engine: AsyncEngine) -> None:
    altered = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(altered)
    events = altered.tables["events"]
    events.c.tx_id.type = BigInteger()
    events.append_column(Column("extra", Text))
    Index("events_extra_idx", events.c.extra)

    async with engine.connect() as conn:
        diffs = await conn.run_sync(_diff, altered)

    kinds = sorted(d[0] if isinstance(d, tuple) else d[0][0] for d in diffs)
    assert kinds == ["add_column", "add_index", "modify_type"]


async def test_downgrade_drops_everything_and_upgrade_restores_it(
    fresh_database_url: str,
) -> None:
    config = alembic_config(fresh_database_url)
    await asyncio.to_thread(command.downgrade, config, "base")

    engine = make_engine(fresh_database_url)
    objects = text(
        """
        SELECT c.relkind::text || ':' || c.relname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname NOT LIKE 'alembic_version%'
        UNION ALL
        SELECT 'function:' || p.proname FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
        """
    )
    try:
        async with engine.connect() as conn:
            assert (await conn.scalars(objects)).all() == []
        await engine.dispose()

        await asyncio.to_thread(migrate, fresh_database_url)
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT to_regclass('events') IS NOT NULL"))
            assert (await conn.run_sync(_diff)) == []
    finally:
        await engine.dispose()


async def test_migration_0006_backfills_each_deployments_running_time_used(fresh_database_url: str) -> None:
    """``used_us`` is restored from the log exactly as the fold derives it, so verify stays clean."""
    engine = make_engine(fresh_database_url)
    clock = ManualClock(T0)
    used = text("SELECT deployment_id, status, used_us FROM deployments ORDER BY 1")
    try:
        service = Ledger(engine, clock, await ensure_rate_card(engine))
        await service.start()
        try:
            await service.execute(c.OpenAccount(account_id="gpu", name="gpu", plan="team"))
            await service.execute(c.GrantCredits(account_id="gpu", amount_ucr=100_000_000, reason="t"))
            for d in ("paused", "stopped", "running"):
                await service.execute(c.StartDeployment(account_id="gpu", deployment_id=d, instance_type="cpu-s"))
            for minutes, cmd in ((45, c.StopDeployment), (90, c.PauseDeployment), (180, c.ResumeDeployment),
                                 (200, c.PauseDeployment)):
                clock.set(T0 + timedelta(minutes=minutes, microseconds=7))
                await service.execute(cmd(account_id="gpu", deployment_id="stopped" if minutes == 45 else "paused"))
        finally:
            await service.stop()
        async with engine.connect() as conn:
            before = (await conn.execute(used)).all()
        minute = 60_000_000
        assert before == [("paused", "paused", 110 * minute + 7), ("running", "running", 0),
                          ("stopped", "stopped", 45 * minute + 7)]

        await engine.dispose()
        await asyncio.to_thread(command.downgrade, alembic_config(fresh_database_url), "0005")
        await asyncio.to_thread(migrate, fresh_database_url)
        async with engine.connect() as conn:
            assert (await conn.execute(used)).all() == before
        assert (await verify(engine)).clean
    finally:
        await engine.dispose()


async def test_migration_0009_backfills_what_each_account_ever_spent(fresh_database_url: str) -> None:
    """``spent_ucr`` is restored from the log exactly as the fold derives it, so verify stays clean."""
    engine = make_engine(fresh_database_url)
    spent = text("SELECT account_id, spent_ucr FROM accounts ORDER BY 1")
    try:
        service = Ledger(engine, ManualClock(T0), await ensure_rate_card(engine))
        await service.start()
        try:
            for a, messages in (("idle", 0), ("busy", 7), ("huge", 10**15)):
                await service.execute(c.OpenAccount(account_id=a, name=a, plan="free"))
                if messages:
                    await service.execute(c.Meter(account_id=a, operation="email", quantity=messages))
                    await service.execute(c.Meter(account_id=a, operation="email", quantity=messages))
        finally:
            await service.stop()
        async with engine.connect() as conn:
            before = (await conn.execute(spent)).all()
        assert before == [("busy", 14_000), ("huge", 2 * 10**18), ("idle", 0)]

        await engine.dispose()
        await asyncio.to_thread(command.downgrade, alembic_config(fresh_database_url), "0008")
        await asyncio.to_thread(migrate, fresh_database_url)
        async with engine.connect() as conn:
            assert (await conn.execute(spent)).all() == before
        assert (await verify(engine)).clean
    finally:
        await engine.dispose()
