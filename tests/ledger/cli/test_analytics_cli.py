"""``credits usage`` and ``credits analytics`` against a fresh database of the test's own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from typer.testing import Result

from ledger import commands as c
from ledger.events import Attribution
from ledger.service import Ledger
from tests.ledger.cli.test_cli import cli as cli  # the fixtures, reused
from tests.ledger.cli.test_cli import one_error_line
from tests.ledger.cli.test_cli import with_ledger as with_ledger
from tests.projections.folding import fold_all


def test_usage_and_analytics_tables(cli: Callable[..., Result], with_ledger: Callable[..., Any]) -> None:
    assert cli("accounts", "open", "u1", "--plan", "pro").exit_code == 0

    async def use(ledger: Ledger) -> None:
        run = Attribution(flow="welcome", agent="greeter", execution="e1")
        await ledger.execute(c.Meter(account_id="u1", operation="gpt-4o", attribution=run,
                                     quantities={"input_tokens": 4_000, "output_tokens": 1_000}))
        await ledger.execute(c.Meter(account_id="u1", operation="email", quantity=3, attribution=run))
        await fold_all(ledger.engine)

    with_ledger(use)
    # gpt-4o on the test card: 4,000 × 2.50 + 1,000 × 10 credits per 1M = 0.02 credits; email 0.001 each.
    shown = cli("usage", "u1", "--by", "integration")
    assert shown.exit_code == 0, shown.output
    assert "usage of u1 by integration, per day" in shown.output
    assert any(line.split()[1:2] == ["ai"] and line.split()[-1] == "0.020000" for line in shown.output.splitlines())
    assert any(line.split()[1:2] == ["email"] and line.split()[-1] == "0.003000"
               for line in shown.output.splitlines())
    flows = cli("usage", "u1", "--by", "flow", "--bucket", "month")
    assert flows.exit_code == 0 and "welcome" in flows.output and "0.023000" in flows.output, flows.output

    a = cli("analytics", "u1", "--days", "7")
    assert a.exit_code == 0, a.output
    for heading in ("analytics of u1, last 7 days", "by model", "most expensive requests", "suggestions"):
        assert heading in a.output
    assert "gpt-4o" in a.output and "caught up" in a.output


def test_bad_options_are_one_error_line(cli: Callable[..., Result]) -> None:
    assert cli("accounts", "open", "u2").exit_code == 0
    assert "bucket must be one of" in one_error_line(cli("usage", "u2", "--bucket", "year"))
    assert "--from must be an ISO date" in one_error_line(cli("usage", "u2", "--from", "yesterday"))
    assert "days must be one of" in one_error_line(cli("analytics", "u2", "--days", "10"))
    assert "u2x" in one_error_line(cli("analytics", "u2x"))
