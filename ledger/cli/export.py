"""``credits export ACCOUNT [--from] [--to] [--output FILE]``: usage as CSV for accounting, through
the same query as ``GET /v1/accounts/{account}/export.csv`` (``projections.queries.export``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ledger.cli import render
from ledger.cli.demo import DemoOption, ledger_url
from ledger.cli.runner import open_engine, run


def export(
    account_id: Annotated[str, typer.Argument(metavar="ACCOUNT")],
    start: Annotated[str | None, typer.Option("--from", help=(
        "First moment included: a date (UTC midnight) or a date and time with its offset."))] = None,
    end: Annotated[str | None, typer.Option("--to", help=(
        "First moment left out, or a date whose whole day is included."))] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to FILE (default: stdout).",
                                                metavar="FILE", dir_okay=False)] = None,
    demo: DemoOption = False,
) -> None:
    """Usage as CSV (date, workflow, agent, model, input_tokens, output_tokens, credits, status), oldest first.

    The read model is brought up to date first, so the export holds everything recorded so far.
    """
    run(_export(account_id, start, end, output, demo))


async def _export(account_id: str, start: str | None, end: str | None, output: Path | None, demo: bool) -> None:
    from projections.history import HISTORY
    from projections.queries import export as x
    from projections.runner import Projections

    within = x.parse_range(start, end)  # a bad range fails before anything is opened
    async with open_engine(await ledger_url(demo)) as engine:
        # Nothing may be running the projectors (no `credits serve`): fold what is there first.
        await Projections(engine, [HISTORY]).catch_up()
        export = await x.open_export(engine, account_id, within)
        if output is None:
            async for piece in x.csv_chunks(engine, export):
                sys.stdout.write(piece)
            sys.stdout.flush()
            return
        total = await x.count_rows(engine, export)
        # Written beside the file and renamed at the end: a failure never leaves half a CSV under its name.
        partial = output.with_name(output.name + ".part")
        progress = Progress(TextColumn("export"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                            TimeElapsedColumn(), console=render.console(stderr=True), transient=True,
                            disable=total <= x.CHUNK)
        try:
            with partial.open("w", encoding="utf-8", newline="") as f, progress:
                task = progress.add_task("export", total=total)
                f.write(x.header())
                async for rows in x.pages(engine, export):
                    f.write(x.csv_lines(rows))
                    progress.advance(task, len(rows))
            partial.replace(output)
        finally:
            partial.unlink(missing_ok=True)
    typer.echo(f"wrote {total} row{'' if total == 1 else 's'} to {output}"
               f" (as of log position {export.freshness.as_of_position})", err=True)
