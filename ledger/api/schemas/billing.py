"""Money through Stripe: checkout, the webhook, refunds, the billing portal and invoices."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import Field, StrictBool

from ledger.api.schemas.base import Body, Out, WriteBody, examples
from ledger.api.schemas.fields import CreditsText, Ucr, Url


class CheckoutIn(WriteBody):
    """A pack (``GET /v1/packs``) or a custom ``credits_amount``, exactly one."""

    model_config = examples(pack="builder", success_url="https://app.example.com/billing?paid=1",
                            cancel_url="https://app.example.com/billing")

    pack: Annotated[str | None, Field(min_length=1, max_length=100, examples=["builder"])] = None
    credits_amount: CreditsText | None = None
    credits_amount_ucr: Ucr | None = None
    success_url: Url
    cancel_url: Url


class CheckoutOut(Out):
    checkout_url: str
    session_id: str
    kind: str
    pack: str | None
    credits: str
    credits_ucr: int
    bonus: str
    bonus_ucr: int
    price_cents: int
    price: str
    currency: str


class StripeWebhookOut(Out):
    received: bool
    #: ``recorded``, ``replayed`` (already recorded), ``ignored`` or ``notice`` (paid, nothing credited).
    outcome: str
    detail: str


class RefundIn(WriteBody):
    """Refund a purchase paid through Stripe: ``amount`` (credits) or all that is left of it."""

    model_config = examples(purchase_id="0193a6c8-5b7e-7c3a-9d2e-4f1a2b3c4d5e", amount="200",
                            reason="customer asked within 30 days")

    purchase_id: UUID
    amount: CreditsText | None = None
    amount_ucr: Ucr | None = None
    reason: Annotated[str, Field(min_length=1, max_length=500, examples=["customer asked within 30 days"])]
    #: Refund outside the rate card's refund window.
    force: StrictBool = False


class RefundOut(Out):
    #: The refund's ledger entry id.
    id: UUID
    purchase_id: UUID
    created_at: datetime
    #: What was taken back (at most what was left of the purchase).
    amount: str
    amount_ucr: int
    requested: str
    requested_ucr: int
    capped: bool
    forced: bool
    reason: str
    balance_after: str
    balance_after_ucr: int
    stripe_refund: str
    refunded_cents: int
    refunded: str
    currency: str


class PortalIn(Body):
    model_config = examples(return_url="https://app.example.com/billing")

    return_url: Url | None = None


class PortalOut(Out):
    url: str


class InvoiceOut(Out):
    #: The ledger entry id: of the purchase (a refund's ``purchase_id``), or of a plan invoice's allowance.
    id: UUID
    created_at: datetime
    kind: str
    pack: str | None
    credits: str
    credits_ucr: int
    bonus: str
    bonus_ucr: int
    paid_cents: int
    paid: str
    currency: str
    receipt_url: str | None
    invoice_pdf: str | None
    stripe_checkout_session: str | None
    stripe_payment_intent: str | None
    stripe_invoice: str | None


class InvoicePage(Out):
    data: list[InvoiceOut]
    has_more: bool
    next_cursor: str | None
