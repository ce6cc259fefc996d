"""The card auto-refills charge: saved through a setup-mode Checkout Session on the account's
Stripe customer, or changed in the billing portal; either way the webhook records it
(``SavePaymentMethod``, which also closes the refill breaker when the card is new).

The account's customer is the one its auto-refill already uses, else the one its purchases were
paid by, else one created here (with the account in its metadata, under an idempotency key of
the account, so two racing calls make one customer).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from ledger import commands as c
from ledger import rows
from ledger.billing import invoices
from ledger.billing.checkout import SOURCE
from ledger.billing.gateway import StripeGateway, stripe_id
from ledger.service import Ledger

#: ``metadata.kind`` of a setup session opened here.
KIND = "payment_method"



async def account_customer(ledger: Ledger, gateway: StripeGateway, account_id: str) -> str:
    """The account's Stripe customer (see the module docstring), created if it has none."""
    saved = rows.auto_refill((await ledger.account(account_id)).settings).stripe_customer
    found = saved or await invoices.stripe_customer(ledger, account_id)
    if found:
        return found
    created = await gateway.create_customer({"metadata": {"source": SOURCE, "account": account_id}},
                                            f"credit-ledger:customer:{account_id}")
    return str(created["id"])


async def open_card_setup(ledger: Ledger, gateway: StripeGateway, account_id: str, *, success_url: str,
                          cancel_url: str, request_key: str | None) -> dict[str, Any]:
    """A setup-mode Checkout Session that saves a card for auto-refills (the same
    ``Idempotency-Key`` returns the same session)."""
    customer = await account_customer(ledger, gateway, account_id)
    meta = {"source": SOURCE, "kind": KIND, "account": account_id}
    return await gateway.create_checkout_session({
        "mode": "setup", "customer": customer, "currency": ledger.card.currency.lower(),
        "success_url": success_url, "cancel_url": cancel_url, "client_reference_id": account_id,
        "metadata": meta, "setup_intent_data": {"metadata": meta},
    }, f"credit-ledger:setup:{account_id}:{request_key}" if request_key else None)


def is_card_setup(session: dict[str, Any]) -> bool:
    meta = session.get("metadata") or {}
    return session.get("mode") == "setup" and meta.get("source") == SOURCE and meta.get("kind") == KIND


def card_saved(session: dict[str, Any], setup_intent: dict[str, Any]) -> c.SavePaymentMethod | None:
    """The card a completed setup session saved (keyed by the session: once however often told)."""
    pm = stripe_id(setup_intent.get("payment_method"))
    customer = stripe_id(session.get("customer")) or stripe_id(setup_intent.get("customer"))
    if pm is None or customer is None:
        return None
    return c.SavePaymentMethod(account_id=str((session.get("metadata") or {})["account"]), stripe_customer=customer,
                               payment_method=pm, idempotency_key=f"stripe:setup:{session['id']}")


def default_card(account_id: str, customer: dict[str, Any], event_id: str) -> c.SavePaymentMethod | None:
    """The customer's default card as Stripe has it now (read fresh, so events delivered out of
    order still end on the card the customer chose last), keyed by the event."""
    pm = stripe_id((customer.get("invoice_settings") or {}).get("default_payment_method"))
    if pm is None:
        return None
    return c.SavePaymentMethod(account_id=account_id, stripe_customer=str(customer["id"]), payment_method=pm,
                               idempotency_key=f"stripe:{event_id}")


async def accounts_of_customer(ledger: Ledger, customer: dict[str, Any]) -> list[str]:
    """The accounts whose auto-refill charges ``customer``: the one in its metadata (customers made
    here), else those whose saved card is on it. The second is a scan of ``accounts``; it runs
    only for a customer whose card changed, which is rare."""
    named = (customer.get("metadata") or {}).get("account")
    if named:
        return [str(named)]
    async with ledger.engine.connect() as conn:
        found = (await conn.execute(text(
            "SELECT account_id FROM accounts WHERE settings->'auto_refill'->>'stripe_customer' = :c"
            " ORDER BY account_id"), {"c": str(customer["id"])})).scalars().all()
    return [str(a) for a in found]
