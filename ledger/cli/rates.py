"""``credits rates``: load a rate card as a new version, show one, list them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ledger.bootstrap import open_ledger
from ledger.cli import render
from ledger.cli.runner import fail, run
from ledger.errors import RateCardError
from ledger.rate_cards import current_rate_card, list_rate_cards, rate_card_version
from ledger.rates import RateCard, load_rate_card_file
from ledger.settings import load_settings

app = typer.Typer(help="Rate cards: load a new version, show one, list them.", no_args_is_help=True)


@app.command("load")
def rates_load(file: Annotated[Path, typer.Argument(help="A rate card TOML file.")]) -> None:
    """Validate a rate card file and store it as a new version (old usage keeps its version)."""
    try:
        card = load_rate_card_file(file)
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    except RateCardError as exc:
        fail(f"{file}: {exc.detail}")
    run(_rates_load(card, file))


async def _rates_load(card: RateCard, file: Path) -> None:
    settings = load_settings()
    check_s = settings.rates_check_s
    async with open_ledger(settings) as ledger:
        added = await ledger.load_rates(card, str(file))
        current = ledger.card.version
    if added:
        typer.echo(f"rates: version {card.version} added ({len(card.operations)} operations,"
                   f" {len(card.packs)} packs, {len(card.plans)} plans); running API and worker processes"
                   f" price new usage with it within {check_s:g} s (CREDITS_RATES_CHECK_S)")
    else:
        note = "" if current == card.version else f" (the current version is {current})"
        typer.echo(f"rates: version {card.version} already loaded{note}")


@app.command("show")
def rates_show(
    version: Annotated[str | None, typer.Option("--version", help="A stored version (default: current).")] = None,
) -> None:
    """Show a rate card: operations, packs and plans."""
    run(_rates_show(version))


async def _rates_show(version: str | None) -> None:
    async with open_ledger() as ledger, ledger.engine.connect() as conn:
        current = await current_rate_card(conn)
        card = current if version is None else await rate_card_version(conn, version)
    if card is None:
        fail(f"no rate card version {version!r}")
    out = render.console()
    for table in render.rates_tables(card, current=current is not None and card.version == current.version):
        out.print(table)


@app.command("list")
def rates_list() -> None:
    """List the stored rate-card versions, oldest first."""
    run(_rates_list())


async def _rates_list() -> None:
    async with open_ledger() as ledger, ledger.engine.connect() as conn:
        versions = await list_rate_cards(conn)
    render.console().print(render.versions_table(versions))
