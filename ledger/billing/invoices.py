"""What an account paid, read from its own event stream: its purchases (with Stripe's receipt and
invoice links where Stripe gave them) and the Stripe customer the billing portal opens on."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from ledger.billing.gateway import StripeGateway
from ledger.errors import InvalidState
from ledger.events import AllowanceGranted, CreditsPurchased
from ledger.rows import EVENT_COLUMNS, row_to_event
from ledger.service import Ledger


async def purchases(ledger: Ledger, account_id: str, *, limit: int, before_version: int | None = None
                    ) -> list[tuple[int, CreditsPurchased | AllowanceGranted]]:
    """The account's purchases and the plan invoices it paid (an allowance granted for a Stripe
    invoice), newest first (``before_version`` continues an iteration)."""
    await ledger.account(account_id)  # 404 for an unknown account
    async with ledger.engine.connect() as conn:
        rows = (await conn.execute(text(
            f"SELECT {EVENT_COLUMNS} FROM events"
            " WHERE account_id = :a AND version < :b AND (type = 'CreditsPurchased'"
            "  OR (type = 'AllowanceGranted' AND data ? 'stripe_invoice' AND data->>'stripe_invoice' IS NOT NULL))"
            " ORDER BY version DESC LIMIT :l"),
            {"a": account_id, "b": before_version if before_version is not None else 2**62, "l": limit})).all()
    found = [(r.version, row_to_event(r)) for r in rows]
    return [(v, e) for v, e in found if isinstance(e, CreditsPurchased | AllowanceGranted)]


async def stripe_customer(ledger: Ledger, account_id: str) -> str | None:
    """The Stripe customer of the account's latest purchase paid through Stripe, if any."""
    await ledger.account(account_id)
    async with ledger.engine.connect() as conn:
        found: Any = (await conn.execute(text(
            "SELECT data->>'stripe_customer' FROM events"
            " WHERE account_id = :a AND type = 'CreditsPurchased' AND data->>'stripe_customer' IS NOT NULL"
            " ORDER BY version DESC LIMIT 1"), {"a": account_id})).scalar()
    return str(found) if found else None


async def portal_url(ledger: Ledger, gateway: StripeGateway, account_id: str, return_url: str | None) -> str:
    """A Stripe billing portal session for the account's customer (to update the saved card)."""
    customer = await stripe_customer(ledger, account_id)
    if customer is None:
        raise InvalidState(f"account {account_id!r} has no Stripe customer yet: it gets one with its first"
                           " checkout")
    params: dict[str, Any] = {"customer": customer}
    if return_url:
        params["return_url"] = return_url
    session = await gateway.create_portal_session(params)
    return str(session["url"])
