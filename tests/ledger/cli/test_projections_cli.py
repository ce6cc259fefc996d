"""``credits projections rebuild|status`` and ``credits verify`` on the read models, in-process
against a fresh database of the test's own (synchronous: each command runs its own loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner, Result

from ledger.cli.app import app
from ledger.db import make_engine


@pytest.fixture
def cli(fresh_database_url: str, tmp_path: Path) -> Iterator[Callable[..., Result]]:
    runner = CliRunner()
    env = {"DATABASE_URL": fresh_database_url, "CREDITS_DATA_DIR": str(tmp_path / "unused")}

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args), env=env)

    yield invoke


def _execute(url: str, sql: str) -> None:
    async def main() -> None:
        engine = make_engine(url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(main())


def test_rebuild_then_verify_names_a_tampered_row(cli: Callable[..., Result], fresh_database_url: str) -> None:
    for account in ("p1", "p2"):
        assert cli("accounts", "open", account, "--plan", "pro").exit_code == 0
    built = cli("projections", "rebuild")
    assert built.exit_code == 0, built.output
    assert {"rebuilt history", "rebuilt activities", "rebuilt usage"} <= set(built.stdout.splitlines())
    status = cli("projections", "status")
    assert status.exit_code == 0 and "activities" in status.stdout
    clean = cli("verify")
    assert clean.exit_code == 0, clean.output
    assert "read models: 0 differences from a fresh fold of the log" in clean.stdout

    _execute(fresh_database_url, "UPDATE proj_activities SET amount_ucr = amount_ucr + 1 WHERE account_id = 'p1'")
    dirty = cli("verify")
    assert dirty.exit_code == 1
    named = [ln for ln in dirty.stdout.splitlines() if ln.startswith("projection activities: proj_activities")]
    assert named and all("account_id=p1" in ln for ln in named)
    assert any("in the read model only" in ln for ln in named) and any("fresh fold only" in ln for ln in named)

    assert cli("projections", "rebuild", "activities").exit_code == 0
    assert cli("verify").exit_code == 0


def test_an_unknown_read_model_is_one_line(cli: Callable[..., Result]) -> None:
    result = cli("projections", "rebuild", "nope")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "error: no projection 'nope'; there are: history, activities, usage")
