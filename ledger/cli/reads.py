"""The read models on the command line: ``credits history ACCOUNT --executions`` (the billing
history), ``--deployments`` (hours and credits per deployment) and ``credits activities ACCOUNT``.

They read through the same queries as the API (``projections.queries``), after folding what the
log holds (nothing may be running the projectors: no ``credits serve``), and say how fresh the
page is in its caption.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.cli import render
from ledger.cli.demo import DemoOption, ledger_url
from ledger.cli.runner import open_engine, run
from ledger.money import format_credits
from projections.freshness import Freshness
from projections.projector import Projector
from projections.queries.activities import KINDS, Activity
from projections.queries.history import DeploymentUsage, Execution


def _caption(what: str, shown: int, offset: int, has_more: bool, fresh: Freshness) -> str:
    rows = f"{what} {offset + 1}-{offset + shown}, newest first" if shown else f"no {what} past {offset}"
    more = "; more with --offset" if has_more else ""
    lag = f", {fresh.lag_ms} ms behind" if fresh.lag_ms else ""
    return f"{rows}{more} (as of log position {fresh.as_of_position}{lag})"


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def executions_table(account_id: str, rows: list[Execution], caption: str) -> Table:
    t = Table(title=f"executions of {account_id}", caption=caption, box=box.SIMPLE_HEAD)
    for name in ("time (UTC)", "execution", "operation", "machine", "duration"):
        t.add_column(name)
    t.add_column("credits", justify="right")
    for e in rows:
        t.add_row(render.when(e.occurred_at), e.execution_id, e.operation, e.machine_type or "-",
                  _duration(e.duration_s), format_credits(e.cost_ucr))
    return t


def deployments_table(account_id: str, rows: list[DeploymentUsage], caption: str) -> Table:
    t = Table(title=f"deployments of {account_id}", caption=caption, box=box.SIMPLE_HEAD)
    for name in ("deployment", "machine", "first hour (UTC)", "last hour (UTC)"):
        t.add_column(name)
    t.add_column("hours", justify="right")
    t.add_column("credits", justify="right")
    for d in rows:
        t.add_row(d.deployment_id, d.instance_type, render.when(d.first_at), render.when(d.last_at), str(d.hours),
                  format_credits(d.credits_ucr))
    return t


def activities_table(account_id: str, rows: list[Activity], caption: str) -> Table:
    t = Table(title=f"activities of {account_id}", caption=caption, box=box.SIMPLE_HEAD)
    for name in ("time (UTC)", "kind", "operation"):
        t.add_column(name)
    t.add_column("amount", justify="right")
    t.add_column("balance after", justify="right")
    for a in rows:
        t.add_row(render.when(a.occurred_at), a.kind, a.operation, render.signed(a.amount_ucr),
                  format_credits(a.balance_after_ucr))
    return t


async def _folded(engine: AsyncEngine, projector: Projector) -> None:
    from projections.runner import Projections

    await Projections(engine, [projector]).catch_up()


async def show_executions(account_id: str, limit: int, offset: int, demo: bool) -> None:
    from projections.history import HISTORY
    from projections.queries.history import executions

    async with open_engine(await ledger_url(demo)) as engine:
        await _folded(engine, HISTORY)
        page = await executions(engine, account_id, limit=limit, offset=offset)
    rows = list(page.rows)
    caption = _caption("executions", len(rows), offset, page.has_more, page.freshness)
    render.console().print(executions_table(account_id, rows, caption))


async def show_deployments(account_id: str, limit: int, offset: int, demo: bool) -> None:
    from projections.history import HISTORY
    from projections.queries.history import deployments

    async with open_engine(await ledger_url(demo)) as engine:
        await _folded(engine, HISTORY)
        page = await deployments(engine, account_id, limit=limit, offset=offset)
    caption = _caption("deployments", len(page.rows), offset, page.has_more, page.freshness)
    render.console().print(deployments_table(account_id, page.rows, caption))


def activities(
    account_id: Annotated[str, typer.Argument(metavar="ACCOUNT")],
    kind: Annotated[str | None, typer.Option(help=f"Only this kind: {', '.join(KINDS)}.")] = None,
    limit: Annotated[int, typer.Option(help="Activities per page (1-500).")] = 20,
    offset: Annotated[int, typer.Option(help="Activities to skip, newest first.")] = 0,
    demo: DemoOption = False,
) -> None:
    """Show an account's activity feed, newest first: usage, purchases, grants, refunds, reservations, expiries."""
    run(_activities(account_id, kind, limit, offset, demo))


async def _activities(account_id: str, kind: str | None, limit: int, offset: int, demo: bool) -> None:
    from projections.activities import ACTIVITIES
    from projections.queries.activities import activities as read

    async with open_engine(await ledger_url(demo)) as engine:
        await _folded(engine, ACTIVITIES)
        page = await read(engine, account_id, limit=limit, offset=offset, kind=kind)
    rows = list(page.rows)
    caption = _caption(f"{kind} activities" if kind else "activities", len(rows), offset, page.has_more,
                       page.freshness)
    render.console().print(activities_table(account_id, rows, caption))
