"""``credits accounts open``, and what an account holds: ``credits balance`` and ``credits history``
(``--executions`` and ``--deployments`` read the billing history model, ``ledger.cli.reads``)."""

from __future__ import annotations

from typing import Annotated

import typer

from ledger import commands as c
from ledger.bootstrap import open_ledger
from ledger.cli import reads, render
from ledger.cli.demo import DemoOption, ledger_url
from ledger.cli.runner import run
from ledger.money import format_credits

app = typer.Typer(help="Accounts (operator tools).", no_args_is_help=True)


@app.command("open")
def accounts_open(
    account_id: Annotated[str, typer.Argument(metavar="ID", help="The new account's id.")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the id).")] = None,
    plan: Annotated[str | None, typer.Option(help="Plan id from the rate card (default: its default plan).")] = None,
) -> None:
    """Open an account (signup credits and the first allowance are granted per plan)."""
    run(_accounts_open(account_id, name, plan))


async def _accounts_open(account_id: str, name: str | None, plan: str | None) -> None:
    async with open_ledger() as ledger:
        await ledger.execute(c.OpenAccount(account_id=account_id, name=name or account_id, plan=plan))
        b = await ledger.balance(account_id, recent=0)
    typer.echo(f"opened {account_id} on plan {b.plan}: balance {format_credits(b.balance_ucr)} credits")


def balance(account_id: Annotated[str, typer.Argument(metavar="ACCOUNT")], demo: DemoOption = False) -> None:
    """Show an account's exact balance, by source, with its allowance and reset date."""
    run(_balance(account_id, demo))


async def _balance(account_id: str, demo: bool) -> None:
    async with open_ledger(url=await ledger_url(demo)) as ledger:
        b = await ledger.balance(account_id, recent=0)
    render.console().print(render.balance_table(b))


def history(
    account_id: Annotated[str, typer.Argument(metavar="ACCOUNT")],
    limit: Annotated[int, typer.Option(help="Entries per page (1-500).")] = 20,
    offset: Annotated[int, typer.Option(help="Entries to skip, newest first.")] = 0,
    executions: Annotated[bool, typer.Option(
        "--executions", help="The billing history instead: one row per usage (execution, machine, duration).")] = False,
    deployments: Annotated[bool, typer.Option(
        "--deployments", help="Hours charged and their credits per deployment instead.")] = False,
    demo: DemoOption = False,
) -> None:
    """Show an account's ledger entries, newest first (or its executions, or its deployments' hours)."""
    if executions and deployments:
        raise typer.BadParameter("give --executions or --deployments, not both")
    if executions:
        run(reads.show_executions(account_id, limit, offset, demo))
    elif deployments:
        run(reads.show_deployments(account_id, limit, offset, demo))
    else:
        run(_history(account_id, limit, offset, demo))


async def _history(account_id: str, limit: int, offset: int, demo: bool) -> None:
    async with open_ledger(url=await ledger_url(demo)) as ledger:
        events = await ledger.entries(account_id, limit=limit, offset=offset)
        total = (await ledger.balance(account_id, recent=0)).version
    render.console().print(render.history_table(account_id, events, offset=offset, total=total))
