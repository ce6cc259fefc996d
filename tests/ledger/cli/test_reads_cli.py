"""``credits history ACCOUNT --executions`` / ``--deployments`` and ``credits activities ACCOUNT``:
the read models as Rich tables, newest first, with their freshness, against a real database."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from typer.testing import Result

from ledger import commands as c
from ledger.events import Attribution, CreditsReserved
from ledger.service import Ledger
from tests.ledger.cli.test_cli import cli as cli  # the fixtures, reused
from tests.ledger.cli.test_cli import one_error_line
from tests.ledger.cli.test_cli import with_ledger as with_ledger
from tests.projections.folding import fold_all

Cli = Callable[..., Result]
WithLedger = Callable[[Callable[[Ledger], Awaitable[Any]]], Any]


def _setup(with_ledger: WithLedger) -> None:
    async def use(ledger: Ledger) -> None:
        await ledger.execute(c.OpenAccount(account_id="reads", name="reads", plan="free"))
        await ledger.execute(c.GrantCredits(account_id="reads", amount_ucr=5_000 * 10**6, source="purchase",
                                            reason="test"))
        for n in range(1, 6):
            await ledger.execute(c.Meter(account_id="reads", operation="sms", quantity=n,
                                         attribution=Attribution(execution=f"run-{n}")))
        hold = (await ledger.execute(c.Reserve(account_id="reads", operation="training_h100_per_minute",
                                               quantity=60))).events[-1]
        assert isinstance(hold, CreditsReserved)
        await ledger.execute(c.Settle(account_id="reads", reservation_id=hold.reservation_id, quantity=20))
        await ledger.execute(c.StartDeployment(account_id="reads", deployment_id="dep-cli", instance_type="cpu-s"))
        # Folded here, so the command's own catch-up finds nothing left to wait for (on a busy
        # server it waits out other databases' transactions).
        await fold_all(ledger.engine)

    with_ledger(use)


def test_executions_and_deployments_as_tables(cli: Cli, with_ledger: WithLedger) -> None:
    _setup(with_ledger)
    first = cli("history", "reads", "--executions", "--limit", "3")
    assert first.exit_code == 0, first.output
    assert re.search(r"cpu-s\s+cpu-s\s+1h00m\s+\d+\.\d{6}", first.stdout), first.stdout
    assert re.search(r"training_h100_per_minute\s+-\s+20m00s\s+\d+\.\d{6}", first.stdout), first.stdout
    assert re.search(r"run-5\s+sms\s+-\s+-\s+0\.037500", first.stdout), first.stdout
    assert "executions 1-3, newest first; more with --offset (as of log position" in first.stdout
    assert " ms behind" not in first.stdout
    rest = cli("history", "reads", "--executions", "--limit", "500", "--offset", "3")
    assert rest.exit_code == 0, rest.output
    assert [int(n) for n in re.findall(r"run-(\d)", rest.stdout)] == [4, 3, 2, 1]
    assert "executions 4-" in rest.stdout and "more with" not in rest.stdout

    deployments = cli("history", "reads", "--deployments")
    assert deployments.exit_code == 0, deployments.output
    assert re.search(r"dep-cli\s+cpu-s\s+.*\s1\s+\d+\.\d{6}", deployments.stdout), deployments.stdout

    # The ledger's own entries are still what `history` shows by default.
    assert "UsageMetered" in cli("history", "reads", "--limit", "3").stdout


def test_activities_as_a_table_with_the_refund_named_by_the_rule(cli: Cli, with_ledger: WithLedger) -> None:
    _setup(with_ledger)
    feed = cli("activities", "reads", "--limit", "50")
    assert feed.exit_code == 0, feed.output
    assert re.search(r"refund\s+training_refund_h100\s+\+\d+\.\d{6}", feed.stdout), feed.stdout
    assert re.search(r"reservation\s+training_h100_per_minute\s+-\d+\.\d{6}", feed.stdout), feed.stdout
    assert re.search(r"grant\s+purchase\s+\+5000\.000000", feed.stdout), feed.stdout
    only = cli("activities", "reads", "--kind", "refund")
    assert only.exit_code == 0, only.output
    assert "refund activities 1-1" in only.stdout
    assert "reservation " not in only.stdout and "execution" not in only.stdout


def test_bad_input_is_one_error_line(cli: Cli, with_ledger: WithLedger) -> None:
    _setup(with_ledger)
    assert "kind must be one of" in one_error_line(cli("activities", "reads", "--kind", "burn"))
    assert "limit must be 1..500" in one_error_line(cli("activities", "reads", "--limit", "0"))
    assert "limit must be 1..500" in one_error_line(cli("history", "reads", "--executions", "--limit", "501"))
    assert one_error_line(cli("activities", "nobody")) == "error: no account 'nobody'"
    assert one_error_line(cli("history", "nobody", "--deployments")) == "error: no account 'nobody'"
    both = cli("history", "reads", "--executions", "--deployments")
    assert both.exit_code == 2 and "not both" in both.output
