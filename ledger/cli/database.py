"""``credits migrate`` and ``credits verify``: the database's schema, and its state checked against its events."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.bootstrap import database_url
from ledger.cli import render
from ledger.cli.demo import DemoOption, ledger_url
from ledger.cli.runner import open_engine, run
from ledger.db import make_engine
from ledger.db import migrate as run_migrations
from ledger.settings import load_settings
from ledger.verify import verify as verify_ledger

if TYPE_CHECKING:
    from projections.rebuild import Difference


def migrate() -> None:
    """Bring the database to the newest schema (DATABASE_URL, else the embedded default)."""
    run(_migrate())


async def _migrate() -> None:
    url = await asyncio.to_thread(database_url, load_settings())
    await asyncio.to_thread(run_migrations, url)
    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            revision = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    finally:
        await engine.dispose()
    typer.echo(f"migrated {make_url(url).render_as_string(hide_password=True)} to revision {revision}")


def verify(
    accounts: Annotated[list[str] | None, typer.Option("--account", help="Only this account (repeatable).")] = None,
    demo: DemoOption = False,
) -> None:
    """Re-derive every account from its events and compare with the stored state, and every read model
    with a fresh fold of the log; exit 1 on a mismatch or a difference."""
    clean = run(_verify(accounts or None, demo))
    if not clean:
        raise typer.Exit(1)


async def _verify(accounts: list[str] | None, demo: bool) -> bool:
    progress = Progress(TextColumn("verify"), BarColumn(), MofNCompleteColumn(), TextColumn("accounts"),
                        TimeElapsedColumn(), console=render.console(stderr=True), transient=True)
    async with open_engine(await ledger_url(demo)) as engine:
        with progress:
            task = progress.add_task("verify", total=None)
            report = await verify_ledger(
                engine, accounts=accounts, progress=lambda done, total: progress.update(task, completed=done,
                                                                                         total=total))
        # The read models are checked whole (a fresh fold of the log up to each one's checkpoint).
        differences = [] if accounts else await _projection_differences(engine)
    for mismatch in report.mismatches:
        typer.echo(str(mismatch))
    for difference in differences:
        typer.echo(str(difference))
    if not accounts:
        typer.echo(f"read models: {len(differences)} difference{'' if len(differences) == 1 else 's'}"
                   " from a fresh fold of the log")
    typer.echo(report.summary())
    return report.clean and not differences


async def _projection_differences(engine: AsyncEngine) -> list[Difference]:
    from projections.catalogue import PROJECTORS
    from projections.rebuild import differences

    return [d for p in PROJECTORS for d in await differences(engine, p)]
