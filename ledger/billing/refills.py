"""Auto-refill payments, pure: the off-session PaymentIntent one refill request makes, and the ledger
command its outcome is.

One crossing, one PaymentIntent. The Stripe idempotency key is the ledger key of the request
(``refill:{account}:{crossing}``), so however many workers or retries charge one crossing, Stripe
makes one PaymentIntent; and the worker charges only while the ledger says the request is still
pending, which also holds after Stripe forgets a key (24 hours).

The outcome is built from the PaymentIntent alone, under a key derived from the crossing, so the
worker's synchronous answer and the webhook (``payment_intent.succeeded`` /
``payment_intent.payment_failed``) build the same command and the ledger lands it once, whichever
comes first.
"""

from __future__ import annotations

from typing import Any

from ledger import commands as c
from ledger.billing.checkout import SOURCE
from ledger.billing.gateway import stripe_id
from ledger.money import format_credits
from ledger.payments import RefillRequest

#: ``metadata.kind`` of a refill's PaymentIntent.
KIND = "auto_refill"


def request_key(account_id: str, crossing: int) -> str:
    """The ledger key of ``RequestAutoRefill``, and Stripe's idempotency key of its PaymentIntent."""
    return f"refill:{account_id}:{crossing}"


def paid_key(account_id: str, crossing: int) -> str:
    return f"stripe:refill:{account_id}:{crossing}:paid"


def failed_key(account_id: str, crossing: int) -> str:
    return f"stripe:refill:{account_id}:{crossing}:failed"


def payment_params(account_id: str, request: RefillRequest, *, customer: str, payment_method: str,
                   currency: str) -> dict[str, Any]:
    """The PaymentIntent that pays ``request``: confirmed at once, off-session, with the saved card."""
    return {
        "amount": request.cents, "currency": currency.lower(), "customer": customer,
        "payment_method": payment_method, "off_session": True, "confirm": True,
        "description": f"Auto-refill of {format_credits(request.credits_ucr)} credits",
        "metadata": {"source": SOURCE, "kind": KIND, "account": account_id, "crossing": str(request.crossing),
                     "credits_ucr": str(request.credits_ucr)},
    }


def is_refill(payment_intent: dict[str, Any]) -> bool:
    """Whether a PaymentIntent is an auto-refill this ledger made."""
    meta = payment_intent.get("metadata") or {}
    return meta.get("source") == SOURCE and meta.get("kind") == KIND



def outcome_command(payment_intent: dict[str, Any]) -> c.RecordPurchase | c.RecordAutoRefillFailure | None:
    """What the PaymentIntent of a refill says: paid, failed, or ``None`` while it is still under way.

    Give it with ``latest_charge`` expanded (the receipt is on the charge), as both callers do.
    """
    meta = payment_intent.get("metadata") or {}
    account, crossing = str(meta["account"]), int(meta["crossing"])
    status = payment_intent.get("status")
    if status == "succeeded":
        charge = payment_intent.get("latest_charge")
        return c.RecordPurchase(
            account_id=account, kind="auto_refill", crossing=crossing,
            cents_paid=int(payment_intent.get("amount_received") or payment_intent["amount"]),
            credits_ucr=int(meta["credits_ucr"]), stripe_payment_intent=str(payment_intent["id"]),
            stripe_charge=stripe_id(charge), stripe_customer=stripe_id(payment_intent.get("customer")),
            receipt_url=charge.get("receipt_url") if isinstance(charge, dict) else None,
            idempotency_key=paid_key(account, crossing))
    if status in ("requires_payment_method", "requires_action", "canceled"):
        error = payment_intent.get("last_payment_error") or {}
        code = error.get("code") or ("authentication_required" if status == "requires_action" else status)
        message = error.get("message") or f"the payment ended {status}"
        return c.RecordAutoRefillFailure(
            account_id=account, crossing=crossing, payment_intent=str(payment_intent["id"]),
            reason=f"{code}: {message}"[:500], decline_code=error.get("decline_code"),
            idempotency_key=failed_key(account, crossing))
    return None  # processing (or not confirmed yet): its webhook says how it ends
