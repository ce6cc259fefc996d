"""``credits projections run|rebuild|status``: keeping the read models current, rebuilding them from
the log, and how far behind they are."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import text

from ledger.cli import render
from ledger.cli.demo import DemoOption, ledger_url
from ledger.cli.runner import open_engine, run

app = typer.Typer(help="The read models (history, activities, usage): run, rebuild, status.", no_args_is_help=True)


@app.command("run")
def run_projections(demo: DemoOption = False) -> None:
    """Keep every read model current until SIGTERM or Ctrl-C (``credits serve`` and ``credits worker`` do too)."""
    run(_run(demo))


async def _run(demo: bool) -> None:
    import signal

    from projections.runner import Projections

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_engine(await ledger_url(demo)) as engine:
        typer.echo("projections running; Ctrl-C to stop", err=True)
        await Projections(engine).run(stop)


@app.command()
def rebuild(
    name: Annotated[str | None, typer.Argument(metavar="[NAME]", help="One read model (default: all).")] = None,
    demo: DemoOption = False,
) -> None:
    """Fold read models afresh from the start of the log into new tables, then swap them in (reads go on meanwhile)."""
    run(_rebuild(name, demo))


async def _rebuild(name: str | None, demo: bool) -> None:
    from projections.catalogue import PROJECTORS, projector
    from projections.rebuild import rebuild as rebuild_projector

    chosen = [projector(name)] if name else list(PROJECTORS)
    async with open_engine(await ledger_url(demo)) as engine:
        async with engine.connect() as conn:
            total = int((await conn.execute(text("SELECT count(*) FROM events"))).scalar_one())
        progress = Progress(TextColumn("rebuild {task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("events"), TimeElapsedColumn(), console=render.console(stderr=True))
        with progress:
            for p in chosen:
                task = progress.add_task(p.name, total=total)

                def advance(n: int, task: TaskID = task) -> None:
                    progress.advance(task, n)

                done = await rebuild_projector(engine, p, on_span=advance)
                progress.update(task, total=max(total, done.events), completed=done.events)
    for p in chosen:
        typer.echo(f"rebuilt {p.name}")


@app.command()
def status(demo: DemoOption = False) -> None:
    """Each read model's position in the log and how long its oldest unfolded event has waited."""
    run(_status(demo))


async def _status(demo: bool) -> None:
    from projections.catalogue import PROJECTORS
    from projections.freshness import status as read_status

    async with open_engine(await ledger_url(demo)) as engine, engine.connect() as conn:
        found = await read_status(conn, PROJECTORS)
    table = Table("read model", "as of position", "lag (ms)")
    for name, f in found.items():
        table.add_row(name, str(f.as_of_position), str(f.lag_ms))
    render.console().print(table)
