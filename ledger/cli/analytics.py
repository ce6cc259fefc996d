"""``credits usage`` and ``credits analytics``: the usage read models, as Rich tables, through the
same queries the API answers with (``projections/queries/usage.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from ledger.bootstrap import open_ledger
from ledger.cli import render
from ledger.cli.demo import DemoOption, ledger_url
from ledger.cli.render_analytics import analytics_tables, usage_table
from ledger.cli.runner import run
from ledger.errors import InvalidRequest
from projections.queries import usage as reads

Account = Annotated[str, typer.Argument(metavar="ACCOUNT")]


def _when(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"--{name} must be an ISO date or time (2026-11-01, 2026-11-01T09:00Z), not {value!r}")\
            from None


def usage(
    account_id: Account,
    bucket: Annotated[str, typer.Option(help="hour, day, week or month.")] = "day",
    by: Annotated[str, typer.Option(help="operation, agent, member, flow, deployment or integration.")] = "operation",
    start: Annotated[str | None, typer.Option("--from", help="First hour (ISO; UTC without an offset).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="End, exclusive (ISO; default: the current hour's end).")]
    = None,
    demo: DemoOption = False,
) -> None:
    """Show an account's usage per bucket and per operation, attribution or integration."""
    run(_usage(account_id, bucket, by, start, end, demo))


async def _usage(account_id: str, bucket: str, by: str, start: str | None, end: str | None, demo: bool) -> None:
    since, until = _when("from", start), _when("to", end)  # inside ``run``: a bad one is an error line
    async with open_ledger(url=await ledger_url(demo)) as ledger:
        report = await reads.usage(ledger, account_id, bucket=bucket, by=by, start=since, end=until)
    render.console().print(usage_table(report))


def analytics(
    account_id: Account,
    days: Annotated[int, typer.Option(help="The window: 7, 14 or 30 days ending today.")] = 30,
    demo: DemoOption = False,
) -> None:
    """Show an account's analytics: daily spend, this month, projection, by model and deployment,
    the most expensive requests and suggestions."""
    run(_analytics(account_id, days, demo))


async def _analytics(account_id: str, days: int, demo: bool) -> None:
    async with open_ledger(url=await ledger_url(demo)) as ledger:
        report = await reads.analytics(ledger, account_id, days)
    console = render.console()
    for table in analytics_tables(report):
        console.print(table)
