"""Money through Stripe: checkout (admin), the signed webhook (no key), refunds (operator), the
billing portal (admin) and invoices (read). The work is in ``ledger.billing``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status

from ledger.api import schemas as s
from ledger.api.body import JsonBodyRoute, read_json
from ledger.api.deps import RT, Admin, IdemHeader, Operator, Reader, idempotency_key, replayed
from ledger.api.render import money_pair
from ledger.api.routes.balance import decode_cursor, encode_cursor
from ledger.billing import invoices
from ledger.billing.checkout import open_checkout
from ledger.billing.refunds import refund_purchase
from ledger.billing.webhook import StripeWebhooks
from ledger.events import AllowanceGranted, CreditsPurchased
from ledger.money import format_cents

router = APIRouter(tags=["billing"], responses=s.ERRORS, route_class=JsonBodyRoute)


@router.post("/v1/accounts/{account}/checkout", response_model=s.CheckoutOut)
async def checkout(account: str, body: s.CheckoutIn, rt: RT, who: Admin,
                   idem: IdemHeader = None) -> s.CheckoutOut:
    """Open a Stripe Checkout Session for a pack or a custom ``credits_amount``; credits land when
    Stripe says it was paid. An unknown pack or an amount outside the card's rule is a 422 and
    Stripe is not called. The same ``Idempotency-Key`` returns the same session."""
    credits = s.pick_money("credits_amount", body.credits_amount, body.credits_amount_ucr, required=False)
    await rt.ledger.account(account)
    key = idempotency_key(idem, body.idempotency_key)
    card = rt.ledger.card
    customer = await invoices.stripe_customer(rt.ledger, account)
    opened = await open_checkout(rt.gateway, card, account, pack_id=body.pack, credits_ucr=credits,
                                 success_url=body.success_url, cancel_url=body.cancel_url, request_key=key,
                                 customer=customer)
    p = opened.priced
    return s.CheckoutOut(checkout_url=opened.checkout_url, session_id=opened.session_id, kind=p.kind, pack=p.pack_id,
                         **money_pair("credits", p.credits_ucr), **money_pair("bonus", p.bonus_ucr),
                         price_cents=p.price_cents, price=format_cents(p.price_cents), currency=p.currency)


@router.post("/v1/stripe/webhook", response_model=s.StripeWebhookOut, openapi_extra={"requestBody": {
    "required": True, "description": "A Stripe event, exactly as Stripe sent it (the signature covers the bytes).",
    "content": {"application/json": {"schema": {"type": "object"}}}}})
async def stripe_webhook(request: Request, rt: RT,
                         stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None
                         ) -> s.StripeWebhookOut:
    """Stripe's events, authenticated by their ``Stripe-Signature`` (no API key). A bad signature:
    400 and nothing recorded. Each Stripe object takes effect once however often it is delivered;
    unknown event types are answered 200 and ignored."""
    await read_json(request)  # the one body rule (JSON in UTF-8), as every route with a body
    handled = await StripeWebhooks(rt.ledger, rt.gateway).receive(await request.body(), stripe_signature)
    return s.StripeWebhookOut(received=True, outcome=handled.outcome, detail=handled.detail)


@router.post("/v1/accounts/{account}/refunds", status_code=status.HTTP_201_CREATED, response_model=s.RefundOut)
async def refund(account: str, body: s.RefundIn, rt: RT, who: Operator, response: Response,
                 idem: IdemHeader = None) -> s.RefundOut:
    """Refund a purchase through Stripe, then take its credits back: never more than is left of it;
    outside the rate card's refund window only with ``force``. ``purchase_id`` is the purchase's
    ledger entry id (``GET .../invoices``)."""
    amount = s.pick_money("amount", body.amount, body.amount_ucr, required=False)
    done = await refund_purchase(rt.ledger, rt.gateway, account, body.purchase_id, amount_ucr=amount,
                                 reason=body.reason, force=body.force,
                                 request_key=idempotency_key(idem, body.idempotency_key))
    replayed(response, done.outcome.replayed)
    e = done.event
    cents = int(done.refund.get("amount") or 0)
    return s.RefundOut(id=e.event_id, purchase_id=e.purchase_id, created_at=e.recorded_at,
                       **money_pair("amount", -e.amount_ucr), **money_pair("requested", e.requested_ucr),
                       capped=e.capped, forced=e.forced, reason=e.reason,
                       **money_pair("balance_after", e.balance_after_ucr), stripe_refund=str(done.refund["id"]),
                       refunded_cents=cents, refunded=format_cents(cents), currency=rt.ledger.card.currency)


@router.post("/v1/accounts/{account}/billing-portal", response_model=s.PortalOut)
async def billing_portal(account: str, rt: RT, who: Admin, body: s.PortalIn | None = None) -> s.PortalOut:
    """A Stripe billing portal session for the account's customer (update the saved card)."""
    return s.PortalOut(url=await invoices.portal_url(rt.ledger, rt.gateway, account,
                                                     body.return_url if body else None))


@router.get("/v1/accounts/{account}/invoices", response_model=s.InvoicePage)
async def list_invoices(account: str, rt: RT, who: Reader, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                        cursor: Annotated[str | None, Query(max_length=100)] = None) -> s.InvoicePage:
    """Purchases and paid plan invoices, newest first, with Stripe's ``receipt_url`` / ``invoice_pdf``
    where Stripe gave one (a plan invoice's ``kind`` is ``plan`` and its ``pack`` the plan)."""
    rows = await invoices.purchases(rt.ledger, account, limit=limit + 1,
                                    before_version=decode_cursor(cursor) if cursor else None)
    more = len(rows) > limit
    rows = rows[:limit]
    data = [_invoice(e, rt.ledger.card.currency) for _, e in rows]
    return s.InvoicePage(data=data, has_more=more, next_cursor=encode_cursor(rows[-1][0]) if more else None)


def _invoice(e: CreditsPurchased | AllowanceGranted, currency: str) -> s.InvoiceOut:
    if isinstance(e, AllowanceGranted):  # a plan's invoice: the allowance it paid for
        cents = e.cents_paid or 0
        return s.InvoiceOut(
            id=e.event_id, created_at=e.recorded_at, kind="plan", pack=e.plan, **money_pair("credits", e.amount_ucr),
            **money_pair("bonus", 0), paid_cents=cents, paid=format_cents(cents), currency=currency,
            receipt_url=None, invoice_pdf=e.invoice_pdf, stripe_checkout_session=None, stripe_payment_intent=None,
            stripe_invoice=e.stripe_invoice)
    return s.InvoiceOut(
        id=e.event_id, created_at=e.recorded_at, kind=e.kind, pack=e.pack_id, **money_pair("credits", e.credits_ucr),
        **money_pair("bonus", e.bonus_ucr), paid_cents=e.cents_paid, paid=format_cents(e.cents_paid),
        currency=currency, receipt_url=e.receipt_url, invoice_pdf=e.invoice_pdf,
        stripe_checkout_session=e.stripe_checkout_session, stripe_payment_intent=e.stripe_payment_intent,
        stripe_invoice=e.stripe_invoice)
