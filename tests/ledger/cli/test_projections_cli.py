"""``credits projections rebuild|status`` and ``credits verify`` on the read models, in-process
against a fresh database of the test's own (synchronous: each command runs its own loop)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner, Result

from ledger.cli.app import app
from ledger.db import make_engine
from tests.ledger.cli.test_cli import query
from tests.ledger.cli.test_demo_embedded import REPO_ROOT, credits_command


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


def test_projections_run_folds_the_log_and_stops_on_sigterm(cli: Callable[..., Result],
                                                             fresh_database_url: str) -> None:
    for account in ("r1", "r2", "r3"):
        assert cli("accounts", "open", account, "--plan", "pro").exit_code == 0
    events = query(fresh_database_url, "SELECT count(*) FROM events")[0][0]
    env = dict(os.environ, DATABASE_URL=fresh_database_url)
    proc = subprocess.Popen([*credits_command(), "projections", "run"], env=env, cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        # The activity feed holds every grant the three accounts were opened with.
        while query(fresh_database_url, "SELECT count(*) FROM proj_activities")[0][0] < 3:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
    positions = query(fresh_database_url, "SELECT name, position FROM log_checkpoints"
                                          " WHERE name LIKE 'projection:%' ORDER BY name")
    last = query(fresh_database_url, "SELECT max(position) FROM events")[0][0]
    assert events > 3 and [p for _, p in positions] == [last] * 3
