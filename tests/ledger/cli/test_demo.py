"""``credits demo`` keeps to a database of its own: the served ledger's log is untouched by it."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from ledger import commands as c
from ledger.cli.app import app
from ledger.cli.demo import run_demo
from ledger.clock import SystemClock
from ledger.db import make_engine, migrate, recreate_database
from ledger.errors import InvalidRequest
from ledger.rate_cards import ensure_rate_card
from ledger.rates import sample_rate_card
from ledger.service import Ledger
from tests.conftest import drop_database


async def log_of(url: str) -> list[Any]:
    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(
                "SELECT position, account_id, type, idempotency_key FROM events ORDER BY position"))).all()]
    finally:
        await engine.dispose()


async def rows(url: str, sql: str) -> set[tuple[Any, ...]]:
    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return {tuple(r) for r in (await conn.execute(text(sql))).all()}
    finally:
        await engine.dispose()


async def open_account(url: str, account_id: str) -> None:
    engine = make_engine(url, pool_size=4)
    ledger = Ledger(engine, SystemClock(), await ensure_rate_card(engine))
    await ledger.start()
    try:
        await ledger.execute(c.OpenAccount(account_id=account_id, name=account_id, plan="pro"))
    finally:
        await ledger.stop()
        await engine.dispose()


async def test_the_demo_leaves_the_served_database_alone(fresh_database_url: str, server_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    await open_account(fresh_database_url, "served")
    before = await log_of(fresh_database_url)

    demo_db = f"credits_fresh_{secrets.token_hex(6)}"
    # Configured as `credits serve` is: the demo is given nothing else.
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("CREDITS_DEMO_DATABASE", demo_db)
    try:
        # What an earlier run left in the demo's database.
        demo_url = await recreate_database(fresh_database_url, demo_db)
        migrate(demo_url)
        await open_account(demo_url, "left-over")
        assert await run_demo("t1")  # verify is clean
        demo_log = await log_of(demo_url)
        # Priced with the shipped sample, and the month makes sense at its prices: the newsletter's
        # debt is paid by the next month's allowance, so no account ends the month in debt.
        assert await rows(demo_url, "SELECT DISTINCT data->>'rate_card_version' FROM events"
                                    " WHERE type = 'UsageMetered'") == {(sample_rate_card().version,)}
        assert await rows(demo_url, "SELECT account_id, status, debt_ucr FROM accounts") == {
            (f"demo-t1-{p}", "active", 0) for p in ("ai", "gpu", "msg")}
        # ``--demo`` reads the demo's database; without it, the ledger's (which has no demo account).
        cli = CliRunner()
        for args, code in ((["balance", "--demo", "demo-t1-ai"], 0), (["verify", "--demo"], 0),
                           (["history", "--demo", "demo-t1-gpu", "--limit", "3"], 0), (["balance", "demo-t1-ai"], 1)):
            result = await asyncio.to_thread(cli.invoke, app, args)
            assert result.exit_code == code, (args, result.output)
    finally:
        await drop_database(server_url, demo_db)

    assert await log_of(fresh_database_url) == before, "the demo wrote to the served database"
    # Only this run's accounts: the database was created afresh for it.
    assert {row[1] for row in demo_log} == {"demo-t1-ai", "demo-t1-gpu", "demo-t1-msg"}


async def test_the_demo_refuses_the_database_the_ledger_is_configured_with(
        fresh_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    name = make_url(fresh_database_url).database
    assert name is not None
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("CREDITS_DEMO_DATABASE", name)
    with pytest.raises(InvalidRequest, match="CREDITS_DEMO_DATABASE"):
        await run_demo("t1")
    assert await log_of(fresh_database_url) == []
