"""``credits export``: the account's usage as CSV on stdout or in a file (through the export query,
after folding what the read model has not yet), a range, and clear errors that write nothing."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from ledger import commands as c
from ledger.cli.app import app
from ledger.clock import ManualClock
from ledger.db import make_engine
from ledger.events import Attribution, UsageMetered
from ledger.rate_cards import ensure_rate_card
from ledger.service import Ledger

HEADER = ["date", "workflow", "agent", "model", "input_tokens", "output_tokens", "credits", "status"]
NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
Rows = list[list[str]]


@pytest.fixture
def cli(fresh_database_url: str, tmp_path: Path) -> Iterator[Callable[..., Result]]:
    runner = CliRunner()
    env = {"DATABASE_URL": fresh_database_url, "CREDITS_DATA_DIR": str(tmp_path / "unused")}

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args), env=env)

    yield invoke


def credits(ucr: int) -> str:
    return f"{ucr // 1_000_000}.{ucr % 1_000_000:06d}"


def record(url: str, account: str, usage: list[tuple[str, str | None, str | None, int, datetime]]) -> Rows:
    """Open ``account`` and meter ``usage`` ((operation, workflow, agent, input tokens, when)); the
    rows the export should hold for it, oldest first, built here from what was recorded."""

    async def main() -> Rows:
        engine = make_engine(url)
        ledger = Ledger(engine, ManualClock(NOW), await ensure_rate_card(engine))
        await ledger.start()
        try:
            await ledger.execute(c.OpenAccount(account_id=account, name=account, plan="pro"))
            await ledger.execute(c.GrantCredits(account_id=account, amount_ucr=10**12, source="purchase",
                                                reason="test"))
            # Token-priced operations by their input tokens, the others (email, sms) one unit.
            commands = [c.Meter(account_id=account, operation=op, quantity=None if tokens else 1,
                                quantities={"input_tokens": tokens} if tokens else None,
                                attribution=Attribution(flow=flow, agent=agent), occurred_at=when,
                                idempotency_key=f"u{i}") for i, (op, flow, agent, tokens, when) in enumerate(usage)]
            outcomes = [out for start in range(0, len(commands), 1000)
                        for out in await ledger.execute_many(commands[start:start + 1000])]
            rows: list[tuple[datetime, list[str]]] = []
            for (op, flow, agent, tokens, _), out in zip(usage, outcomes, strict=True):
                assert not isinstance(out, Exception), out
                u = next(e for e in out.events if isinstance(e, UsageMetered))
                cells = ["'" + v if v[:1] in ("=", "+", "-", "@") else v for v in (flow or "", agent or "", op)]
                rows.append((u.occurred_at, [u.occurred_at.isoformat().replace("+00:00", "Z"), *cells, str(tokens),
                                             "0", credits(u.cost_ucr), "metered"]))
            return [row for _, row in sorted(rows, key=lambda r: r[0])]
        finally:
            await ledger.stop()
            await engine.dispose()

    return asyncio.run(main())


def parse(text: str) -> Rows:
    return list(csv.reader(io.StringIO(text, newline="")))


AWKWARD = [
    ("gpt-4o", "nightly, \"big\"", "bot\nsecond line", 1200, NOW - timedelta(days=2)),
    ("claude-haiku", "=1+1", "@here", 800, NOW - timedelta(days=1)),
    ("gpt-4o", "-flow", "+agent", 50, NOW - timedelta(hours=1)),
    ("email", None, None, 0, NOW - timedelta(days=3)),
]


def test_export_to_stdout_matches_row_for_row(cli: Callable[..., Result], fresh_database_url: str) -> None:
    expected = record(fresh_database_url, "cli-exp", AWKWARD)
    r = cli("export", "cli-exp")
    assert r.exit_code == 0, r.output
    assert parse(r.stdout) == [HEADER, *expected]
    # A range: the day before yesterday through yesterday (dates: whole days, UTC).
    r = cli("export", "cli-exp", "--from", "2026-10-30", "--to", "2026-10-31")
    assert r.exit_code == 0, r.output
    assert parse(r.stdout) == [HEADER, *expected[1:3]]


def test_export_to_a_file_with_many_rows(cli: Callable[..., Result], fresh_database_url: str,
                                          tmp_path: Path) -> None:
    n = 1500  # more than a page: the progress bar's case
    expected = record(fresh_database_url, "cli-many", [
        ("sms", f"flow-{i % 4}", f"agent-{i}", 0, NOW - timedelta(days=1) + timedelta(seconds=i)) for i in range(n)])
    out = tmp_path / "usage.csv"
    r = cli("export", "cli-many", "--output", str(out))
    assert r.exit_code == 0, r.output
    assert f"wrote {n} rows to {out}" in r.stderr
    assert r.stdout == ""
    assert parse(out.read_text(encoding="utf-8")) == [HEADER, *expected]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_bad_input_fails_clearly_and_writes_nothing(cli: Callable[..., Result], fresh_database_url: str,
                                                    tmp_path: Path) -> None:
    record(fresh_database_url, "cli-bad", AWKWARD[:1])
    out = tmp_path / "never.csv"
    r = cli("export", "cli-bad", "--from", "2026-11-02", "--to", "2026-11-01", "--output", str(out))
    assert r.exit_code == 1
    assert "error: from (2026-11-02) is after to (2026-11-01)" in r.stderr
    r = cli("export", "cli-bad", "--to", "soon", "--output", str(out))
    assert r.exit_code == 1
    assert "error: to: 'soon' is not an ISO-8601" in r.stderr
    r = cli("export", "nobody", "--output", str(out))
    assert r.exit_code == 1
    assert "error: no account 'nobody'" in r.stderr
    assert not out.exists()
    assert not out.with_name("never.csv.part").exists()
