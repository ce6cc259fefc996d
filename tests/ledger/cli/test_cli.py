"""The ``credits`` command line against a real database: rates, accounts, balance, history, verify.

Each test gets a fresh migrated database (``DATABASE_URL`` points at it for the command) and
runs the Typer app in-process. The tests are synchronous on purpose: every command runs its own
``asyncio.run``; the few direct ledger calls do the same.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner, Result

from ledger import commands as c
from ledger.cli.app import app
from ledger.clock import SystemClock
from ledger.db import head_revision, make_engine
from ledger.events import UsageMetered
from ledger.rate_cards import ensure_rate_card
from ledger.service import Ledger
from tests.cards import frozen_rate_card_text

T = TypeVar("T")
ROW = re.compile(r"^\s+(\d+)\s+\d{4}-\d\d-\d\d \d\d:\d\d\s", re.MULTILINE)


@pytest.fixture
def cli(fresh_database_url: str, tmp_path: Path) -> Iterator[Callable[..., Result]]:
    """Invoke ``credits`` with ``DATABASE_URL`` set to this test's own database."""
    runner = CliRunner()
    env = {"DATABASE_URL": fresh_database_url, "CREDITS_DATA_DIR": str(tmp_path / "unused")}

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args), env=env)

    yield invoke


@pytest.fixture
def with_ledger(fresh_database_url: str) -> Callable[[Callable[[Ledger], Awaitable[T]]], T]:
    """Run ``fn(ledger)`` on the test's database (its own event loop, like a second process)."""

    def call(fn: Callable[[Ledger], Awaitable[T]]) -> T:
        async def main() -> T:
            engine = make_engine(fresh_database_url, pool_size=4)
            ledger = Ledger(engine, SystemClock(), await ensure_rate_card(engine))
            await ledger.start()
            try:
                return await fn(ledger)
            finally:
                await ledger.stop()
                await engine.dispose()

        return asyncio.run(main())

    return call


def query(url: str, sql: str) -> list[Any]:
    async def main() -> list[Any]:
        engine: AsyncEngine = make_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:
                return [tuple(r) for r in await conn.execute(text(sql))]
        finally:
            await engine.dispose()

    return asyncio.run(main())


def one_error_line(result: Result) -> str:
    """The command failed with exactly one ``error:`` line on stderr and nothing else."""
    assert result.exit_code == 1, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def test_migrate_reports_the_revision(cli: Callable[..., Result]) -> None:
    result = cli("migrate")
    assert result.exit_code == 0, result.output
    assert f"to revision {head_revision()}" in result.stdout


def test_rates_load_new_version_keeps_old_usage_on_its_version(
    cli: Callable[..., Result], with_ledger: Any, fresh_database_url: str, tmp_path: Path
) -> None:
    opened = cli("accounts", "open", "acme", "--name", "Acme", "--plan", "pro")
    assert opened.exit_code == 0, opened.output
    assert "opened acme on plan pro: balance 30.000000 credits" in opened.stdout

    async def meter(ledger: Ledger) -> str:
        out = await ledger.execute(c.Meter(account_id="acme", operation="gpt-4o", quantity=1_000_000))
        event = out.events[-1]
        assert isinstance(event, UsageMetered)
        return event.rate_card_version

    assert with_ledger(meter) == "test-2026-11-01"

    new_card = tmp_path / "rates-2026-12.toml"
    new_card.write_text(frozen_rate_card_text()
                        .replace('version = "test-2026-11-01"', 'version = "2026-12-01"')
                        .replace('credits = "2.50",  per = 1_000_000', 'credits = "2.00",  per = 1_000_000'))
    loaded = cli("rates", "load", str(new_card))
    assert loaded.exit_code == 0, loaded.output
    assert "rates: version 2026-12-01 added" in loaded.stdout
    again = cli("rates", "load", str(new_card))
    assert again.exit_code == 0 and "rates: version 2026-12-01 already loaded" in again.stdout

    listed = cli("rates", "list")
    assert listed.exit_code == 0, listed.output
    assert re.search(r"1\s+test-2026-11-01\s", listed.stdout) and re.search(r"2\s+2026-12-01\s.*current", listed.stdout)
    shown = cli("rates", "show")
    assert "rate card 2026-12-01 (current)" in shown.stdout and "2.00 per 1,000,000 input_tokens" in shown.stdout
    old = cli("rates", "show", "--version", "test-2026-11-01")
    assert "rate card test-2026-11-01 (stored)" in old.stdout and "2.50 per 1,000,000 input_tokens" in old.stdout

    # New usage is priced with the new version; the first event still says it used the old one.
    assert with_ledger(meter) == "2026-12-01"
    versions = query(fresh_database_url, "SELECT data->>'rate_card_version', amount_ucr FROM events"
                                         " WHERE type = 'UsageMetered' ORDER BY version")
    assert versions == [("test-2026-11-01", -2_500_000), ("2026-12-01", -2_000_000)]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("version = \n", "not valid TOML"),
        (frozen_rate_card_text().replace('unit = "messages"\nrates.messages = { credits = "0.001" }',
                                         'unit = "messages"\nrates.messages = { credits = "-1" }'),
         "operations.email.rates.messages.credits"),
        (frozen_rate_card_text().replace('default_plan = "free"', 'default_plan = "gold"'),
         "default_plan 'gold' is not a plan"),
    ],
)
def test_broken_rate_card_prints_one_error_and_stores_nothing(
    cli: Callable[..., Result], fresh_database_url: str, tmp_path: Path, content: str, expected: str
) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text(content)
    line = one_error_line(cli("rates", "load", str(bad)))
    assert expected in line and str(bad) in line
    # Only what the test database was made with: the frozen card.
    assert query(fresh_database_url, "SELECT version FROM rate_cards") == [("test-2026-11-01",)]


def test_rate_card_same_version_different_content_is_refused(
    cli: Callable[..., Result], fresh_database_url: str, tmp_path: Path
) -> None:
    changed = tmp_path / "changed.toml"  # the test database's current version, edited
    changed.write_text(frozen_rate_card_text().replace('credits = "0.0075"', 'credits = "0.0080"'))
    line = one_error_line(cli("rates", "load", str(changed)))
    assert "already loaded with different content" in line
    assert query(fresh_database_url, "SELECT version FROM rate_cards") == [("test-2026-11-01",)]


def test_missing_rate_card_file(cli: Callable[..., Result], tmp_path: Path) -> None:
    line = one_error_line(cli("rates", "load", str(tmp_path / "nope.toml")))
    assert "cannot read" in line


def test_balance_of_unknown_account(cli: Callable[..., Result]) -> None:
    result = cli("balance", "ghost")
    assert one_error_line(result) == "error: no account 'ghost'"
    assert result.stdout == ""


def test_balance_table(cli: Callable[..., Result], with_ledger: Any) -> None:
    assert cli("accounts", "open", "bal-1", "--plan", "team").exit_code == 0

    async def spend(ledger: Ledger) -> None:
        await ledger.execute(c.RecordPurchase(account_id="bal-1", kind="pack", pack_id="starter", cents_paid=1000))
        await ledger.execute(c.Reserve(account_id="bal-1", operation="training_h100_per_minute", quantity=30))

    with_ledger(spend)
    result = cli("balance", "bal-1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    # team: 150 allowance + 20 signup promotion + 10 purchased; 1.995 held for the training run.
    for label, value in (("balance", "180.000000"), ("available", "178.005000"), ("reserved", "1.995000"),
                         ("debt", "0.000000"), ("allowance", "150.000000"), ("promotion", "20.000000"),
                         ("purchase", "10.000000"), ("monthly allowance", "150.000000")):
        assert re.search(rf"^\s+{label}\s+{re.escape(value)}\s*$", out, re.MULTILINE), (label, out)
    # A month after the account opened (the billing cycle is anchored there).
    assert re.search(r"resets at\s+\d{4}-\d\d-\d\d \d\d:\d\d", out)


def test_accounts_open_errors(cli: Callable[..., Result]) -> None:
    assert cli("accounts", "open", "dup").exit_code == 0
    assert "already exists" in one_error_line(cli("accounts", "open", "dup"))
    assert "unknown plan 'gold'" in one_error_line(cli("accounts", "open", "other", "--plan", "gold"))
    # Bad input caught by the command model (pydantic), not a traceback.
    assert "account_id" in one_error_line(cli("accounts", "open", "x" * 300))


def test_history_pages_newest_first(cli: Callable[..., Result], with_ledger: Any) -> None:
    assert cli("accounts", "open", "hist", "--plan", "free").exit_code == 0

    async def use(ledger: Ledger) -> None:
        for n in range(1, 8):
            await ledger.execute(c.Meter(account_id="hist", operation="sms", quantity=n))

    with_ledger(use)
    total = 2 + 7  # opened, signup credits, seven usages
    first = cli("history", "hist", "--limit", "4")
    second = cli("history", "hist", "--limit", "4", "--offset", "4")
    last = cli("history", "hist", "--limit", "4", "--offset", "8")
    for page in (first, second, last):
        assert page.exit_code == 0, page.output
    assert [int(n) for n in ROW.findall(first.stdout)] == [9, 8, 7, 6]
    assert [int(n) for n in ROW.findall(second.stdout)] == [5, 4, 3, 2]
    assert [int(n) for n in ROW.findall(last.stdout)] == [1]
    assert f"entries 1-4 of {total}, newest first" in first.stdout
    assert f"entries 5-8 of {total}" in second.stdout
    # The newest entry is the 7-message SMS: 7 x 0.0075 credits.
    assert re.search(r"UsageMetered\s+sms\s+-0\.052500\s", first.stdout)
    assert re.search(r"AccountOpened\s+hist \(free\)\s+\+0\.000000\s+0\.000000", last.stdout)
    beyond = cli("history", "hist", "--offset", "50")
    assert beyond.exit_code == 0 and "no entries past 50 of 9" in beyond.stdout

    assert "limit must be 1..500" in one_error_line(cli("history", "hist", "--limit", "0"))
    assert one_error_line(cli("history", "nobody")) == "error: no account 'nobody'"


def test_usage_errors_exit_2(cli: Callable[..., Result]) -> None:
    assert cli("history").exit_code == 2
    assert cli("history", "x", "--limit", "many").exit_code == 2


def test_verify_clean_then_tampered(cli: Callable[..., Result], fresh_database_url: str) -> None:
    assert cli("accounts", "open", "v1", "--plan", "pro").exit_code == 0
    assert cli("accounts", "open", "v2").exit_code == 0
    clean = cli("verify")
    assert clean.exit_code == 0, clean.output
    assert clean.stdout.strip().splitlines()[-1] == "verify: 2 accounts, 5 events, clean"

    async def tamper() -> None:
        engine = make_engine(fresh_database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE accounts SET balance_ucr = balance_ucr + 1 WHERE account_id = 'v1'"))
        finally:
            await engine.dispose()

    asyncio.run(tamper())
    dirty = cli("verify")
    assert dirty.exit_code == 1
    lines = dirty.stdout.strip().splitlines()
    assert "account v1: balance is 30.000001, events say 30.000000" in lines
    assert lines[-1] == "verify: 2 accounts, 5 events, 2 mismatches"
    only_v2 = cli("verify", "--account", "v2")
    assert only_v2.exit_code == 0 and "verify: 1 accounts, 2 events, clean" in only_v2.stdout


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    for url, expected in (("postgresql://postgres@127.0.0.1:1/credits", "cannot use the database"),
                          ("mysql://db.example/credits", "not a PostgreSQL URL")):
        result = runner.invoke(app, ["balance", "x"], env={"DATABASE_URL": url, "CREDITS_DATA_DIR": str(tmp_path)})
        assert expected in one_error_line(result)
