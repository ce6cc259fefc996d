"""The ``credits`` command: every command and group, registered on one Typer app.

Each command lives in the module of its job and only parses, calls the ledger and renders with
Rich: ``database`` (migrate, verify), ``processes`` (serve, worker, scheduler), ``accounts``
(balance, history, ``accounts open``), ``reads`` (activities; history's ``--executions`` and
``--deployments``), ``demo``, ``rates``, ``keys``, ``billing`` (refund) and ``projections``
(run, rebuild, status). Every command acts on
``DATABASE_URL``, or on the embedded default under ``CREDITS_DATA_DIR`` (started on first use,
reused afterwards). Expected failures (a ``LedgerError``, bad input, a bad rate-card file, an
unreachable database) print one ``error: ...`` line on stderr and exit 1 (``runner``); usage
errors exit 2 (Typer's default). Nothing runs at import time.
"""

from __future__ import annotations

import typer

from ledger.cli import (
    accounts,
    analytics,
    billing,
    database,
    demo,
    export,
    keys,
    processes,
    projections,
    rates,
    reads,
    stripe_standin,
)

app = typer.Typer(
    name="credits",
    help="Credit Ledger: an event-sourced credits ledger for usage-based products.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# In this order in ``credits --help``.
for command in (database.migrate, processes.serve, processes.worker, processes.scheduler, accounts.balance,
                accounts.history, reads.activities, export.export, database.verify, demo.demo, billing.refund):
    app.command()(command)
app.command("stripe-standin")(stripe_standin.stripe_standin)
app.command()(analytics.usage)
app.command()(analytics.analytics)
app.add_typer(rates.app, name="rates")
app.add_typer(accounts.app, name="accounts")
app.add_typer(keys.app, name="keys")
app.add_typer(projections.app, name="projections")


def main() -> None:
    """Entry point of the ``credits`` console script."""
    app()
