"""``credits refund``: an operator refunds a purchase through Stripe and takes its credits back."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import typer

from ledger.billing.gateway import StripeGateway
from ledger.billing.refunds import refund_purchase
from ledger.bootstrap import open_ledger
from ledger.cli.runner import fail, run
from ledger.money import format_cents, format_credits, parse_credits
from ledger.settings import load_settings


def refund(
    account_id: Annotated[str, typer.Argument(metavar="ACCOUNT")],
    purchase_id: Annotated[str, typer.Argument(metavar="PURCHASE_ID",
                                               help="The purchase's ledger entry id (GET .../invoices).")],
    reason: Annotated[str, typer.Option(help="Why (kept on the refund and in Stripe's metadata).")],
    amount: Annotated[str | None, typer.Option(help="Credits to take back (default: all that is left).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Refund outside the rate card's refund window.")] = False,
    idempotency_key: Annotated[str | None, typer.Option(
        help="Run again with the same key: the same refund, not a second one.")] = None,
) -> None:
    """Refund a purchase through Stripe (STRIPE_API_KEY), then take its credits back (at most what is left)."""
    try:
        pid = UUID(purchase_id)
        ucr = parse_credits(amount) if amount is not None else None
    except ValueError as exc:
        fail(f"{exc}")
    run(_refund(account_id, pid, ucr, reason, force, idempotency_key))


async def _refund(account_id: str, purchase_id: UUID, amount_ucr: int | None, reason: str, force: bool,
                  key: str | None) -> None:
    settings = load_settings()
    async with open_ledger(settings) as ledger:
        done = await refund_purchase(ledger, StripeGateway.from_settings(settings), account_id, purchase_id,
                                     amount_ucr=amount_ucr, reason=reason, force=force, request_key=key)
    e = done.event
    cents = int(done.refund.get("amount") or 0)
    typer.echo(f"refunded {format_cents(cents)} {ledger.card.currency} ({done.refund['id']}); took back"
               f" {format_credits(-e.amount_ucr)} credits{' (all that was left)' if e.capped else ''};"
               f" balance {format_credits(e.balance_after_ucr)}")
