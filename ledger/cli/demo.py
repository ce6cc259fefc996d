"""``credits demo``: a month of three seed products on a simulated clock, then ``verify``.

What the month holds is in ``demo_month``, how its results are followed and told in
``demo_timeline``; this module runs it.

The demo keeps to a database of its own (``CREDITS_DEMO_DATABASE``, default the ledger's
database name + ``_demo``: ``credits_demo`` on the embedded default), dropped
and created afresh on each run on the same server as the ledger's (``DATABASE_URL`` or the
embedded default): a server running on the ledger's database never sees the simulated month
(its relay would raise the month's alerts at wall-clock times), and the served ledger never
holds demo accounts. ``credits balance --demo …`` (and ``history``, ``verify``) look at it after.

The clock starts at the start of the current month (UTC) and moves an hour at a time; each
hour's commands go to the ledger in one ``execute_many`` (one group commit).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import make_url

from ledger import commands as c
from ledger.bootstrap import database_url, open_ledger
from ledger.cli import render
from ledger.cli.demo_month import AI, GPU, LABELS, MSG, NEWSLETTER_OVER, Month, month_start
from ledger.cli.demo_timeline import Timeline
from ledger.cli.runner import run
from ledger.clock import HOUR, ManualClock
from ledger.db import recreate_database, with_database
from ledger.errors import InvalidRequest
from ledger.rates import price
from ledger.service import Ledger
from ledger.settings import Settings, load_settings
from ledger.verify import verify

#: ``--demo``: act on the database ``credits demo`` keeps its month in, not the ledger's.
DemoOption = Annotated[bool, typer.Option("--demo", help="Look at what `credits demo` left (its own database).")]


async def step(ledger: Ledger, month: Month, timeline: Timeline, h: int) -> None:
    """Set the clock to hour ``h`` and submit everything due then in one group commit."""
    timeline.clock.set(month.start + h * HOUR)
    if h == month.newsletter_hour:
        # Sized from the balance, whatever the month's usage: what it covers and 1,000 emails more.
        available = (await ledger.balance(month.ids[MSG], recent=0)).available_ucr
        email = price(ledger.card, "email", {"messages": 1}).amount_ucr
        month.newsletter_emails = max(available, 0) // email + NEWSLETTER_OVER
    first = month.scheduled(h)
    touched = {cmd.deployment_id for cmd in first if isinstance(
        cmd, c.StartDeployment | c.StopDeployment | c.PauseDeployment | c.ResumeDeployment)}
    # Accounts open before anything else touches them; the rest of the hour is one batch,
    # decided in this order (the writer keeps arrival order within a batch).
    for batch in ([cmd for cmd in first if isinstance(cmd, c.OpenAccount)],
                  [cmd for cmd in first if not isinstance(cmd, c.OpenAccount)]
                  + month.hourly_charges(h, touched) + month.usage(h)):
        if not batch:
            continue
        results = await ledger.execute_many(batch)
        timeline.commands += len(batch)
        for cmd, result in zip(batch, results, strict=True):
            timeline.take(cmd, result)


async def demo_database_url(settings: Settings) -> tuple[str, str]:
    """The ledger's database URL and the demo's: a database of its own on the same server
    (``CREDITS_DEMO_DATABASE``, default the ledger's database name + ``_demo``)."""
    served = await asyncio.to_thread(database_url, settings)
    served_name = make_url(served).database or "postgres"
    name = settings.demo_database or f"{served_name}_demo"
    if name == served_name:
        raise InvalidRequest(f"credits demo recreates database {name!r} for each run, and that is the ledger's own:"
                             " set CREDITS_DEMO_DATABASE to another name")
    return served, with_database(served, name)


async def ledger_url(demo: bool = False) -> str | None:
    """The database a command acts on: the ledger's (None: ``open_ledger``'s default), or the demo's."""
    return (await demo_database_url(load_settings()))[1] if demo else None


async def run_demo(run_id: str | None = None, settings: Settings | None = None) -> bool:
    """Run the demo in a database of its own (``demo_database_url``), created afresh on each run;
    True when ``verify`` is clean."""
    settings = settings or load_settings()
    out = render.console()
    start = month_start(datetime.now(UTC))
    run_id = run_id or f"{start:%Y%m}"
    clock = ManualClock(start)
    began = time.perf_counter()
    served, url = await demo_database_url(settings)
    name = make_url(url).database
    assert name is not None
    # Its own database: a running server (its relay, scheduler, alerts) never sees the simulated
    # month, and the month never mixes with the served ledger.
    await recreate_database(served, name)
    async with open_ledger(settings, clock=clock, url=url) as ledger:
        month = Month(ledger.card, start, run_id)
        timeline = Timeline(month, clock, out)
        out.print(f"[bold]credits demo[/] run {run_id}: {start:%B %Y} hour by hour, rate card {ledger.card.version},"
                  f" in database {name}")
        progress = Progress(TextColumn("[bold]simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("hours"),
                            TimeElapsedColumn(), console=out)
        timeline.progress = progress
        with progress:
            task = progress.add_task("month", total=month.hours + 1)
            for h in range(month.hours + 1):
                await step(ledger, month, timeline, h)
                progress.advance(task)
        timeline.progress = None
        simulated = time.perf_counter() - began
        balances = [(LABELS[p], await ledger.balance(month.ids[p], recent=0)) for p in (AI, GPU, MSG)]
        out.print(render.balances_table(f"balances after {start:%B %Y} (next cycle granted)", balances))
        out.print(f"{timeline.commands} commands: {timeline.appended} events appended, {timeline.replayed} replayed"
                  f" (idempotency keys), {timeline.refused} refused; simulated in {simulated:.1f} s")
        report = await verify(ledger.engine, accounts=list(month.ids.values()))
    for mismatch in report.mismatches:
        out.print(str(mismatch), markup=False)
    out.print(f"look around: credits balance --demo {month.ids[AI]}", markup=False, highlight=False)
    out.print(report.summary(), markup=False)
    return report.clean


def demo(
    run_id: Annotated[str | None, typer.Option(
        help="Names the demo's accounts (default: this month).",
    )] = None,
    live: Annotated[bool, typer.Option(
        help="Run the real system (API, worker, scheduler, projections, a Stripe stand-in) and drive the"
             " month through HTTP and signed webhooks; then print the dashboard's address and serve until Ctrl-C.",
    )] = False,
    until_done: Annotated[bool, typer.Option(help="With --live: exit once the month is done (for CI).")] = False,
    host: Annotated[str, typer.Option(help="With --live: interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="With --live: TCP port (0: any free one).")] = 8000,
    step_hours: Annotated[int, typer.Option(min=1, max=24, help="With --live: simulated hours per step.")] = 6,
) -> None:
    """Simulate a month of three seed products (AI tokens, GPU hours, messaging), then verify.

    In a database of its own (CREDITS_DEMO_DATABASE, default the ledger's database name + _demo),
    created afresh on each run on the ledger's server, never the one `credits serve` uses; look at
    it with `--demo` (balance, history, verify). With --live, the same month's usage goes through
    the running API, the worker and the scheduler on a clock the demo moves forward."""
    if live:
        from ledger.cli.demo_live import run_live
        from ledger.cli.demo_live_month import DemoFailed
        from ledger.cli.runner import fail

        try:
            ok = run(run_live(host, port, until_done, step_hours, run_id))
        except DemoFailed as exc:
            fail(str(exc))
    else:
        ok = run(run_demo(run_id))
    if not ok:
        raise typer.Exit(1)
