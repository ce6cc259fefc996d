"""Buying credits and refunds through Stripe: the answers' models and the ``Call`` of each endpoint
(``client.billing.checkout/portal/invoices/refund/auto_refill/save_card/plan``), as ``calls`` does for the others."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from ledger.client.calls import Call, _account_path, _model, _new_key, _written, check_int
from ledger.client.models import _Model, _Written, to_ucr


class CheckoutSession(_Model):
    """A Stripe Checkout Session: send the customer to ``checkout_url``; credits land once Stripe says it was paid."""

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


class Refund(_Written):
    id: UUID
    purchase_id: UUID
    created_at: datetime
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


class Invoice(_Model):
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
    stripe_checkout_session: str | None = None
    stripe_payment_intent: str | None = None
    stripe_invoice: str | None = None


class InvoicePage(_Model):
    data: list[Invoice]
    has_more: bool
    next_cursor: str | None


class PortalSession(_Model):
    url: str


class RefillRequest(_Model):
    crossing: int
    credits: str
    credits_ucr: int
    cents: int
    trigger: str
    status: str
    requested_at: datetime


class AutoRefill(_Model):
    """The auto-refill rule, whether a card is saved, the breaker and the last refill asked."""

    enabled: bool
    threshold: str
    threshold_ucr: int
    amount: str
    amount_ucr: int
    price_cents: int
    daily_cap: str | None
    daily_cap_ucr: int | None
    runout_hours: int | None
    payment_method_saved: bool
    failures: int
    breaker_after: int
    breaker_open: bool
    last_request: RefillRequest | None


class CardSetup(_Model):
    """A Stripe setup-mode Checkout: send the customer to ``checkout_url`` to save the card refills charge."""

    checkout_url: str
    session_id: str


def checkout(pack: str | None, credits_amount: str | int | None, success_url: str, cancel_url: str,
             idempotency_key: str | None) -> Call[CheckoutSession]:
    if (pack is None) == (credits_amount is None):
        raise ValueError("give exactly one of pack or credits_amount")
    body: dict[str, object] = {"success_url": success_url, "cancel_url": cancel_url}
    if pack is not None:
        body["pack"] = pack
    else:
        to_ucr(credits_amount)  # float-ok: refuse a float or a malformed amount here, not at the server
        body["credits_amount"] = credits_amount
    return Call("POST", _account_path(None, "/checkout"), _model(CheckoutSession), json=body,
                idempotency_key=_new_key(idempotency_key))


def refund(purchase_id: str | UUID, amount: str | int | None, reason: str, force: bool,
           idempotency_key: str | None) -> Call[Refund]:
    body: dict[str, object] = {"purchase_id": str(purchase_id), "reason": reason, "force": force}
    if amount is not None:
        to_ucr(amount)  # float-ok: refused here
        body["amount"] = amount
    return Call("POST", _account_path(None, "/refunds"), _written(Refund), json=body,
                idempotency_key=_new_key(idempotency_key))


def portal(return_url: str | None) -> Call[PortalSession]:
    return Call("POST", _account_path(None, "/billing-portal"), _model(PortalSession),
                json={"return_url": return_url} if return_url is not None else None)


def invoices(limit: int = 50, cursor: str | None = None) -> Call[InvoicePage]:
    check_int("limit", limit)
    params: dict[str, str | int] = {"limit": limit}
    if cursor is not None:
        params["cursor"] = cursor
    return Call("GET", _account_path(None, "/invoices"), _model(InvoicePage), params=params)


def auto_refill(enabled: bool, threshold: str | int, amount: str | int, daily_cap: str | int | None,
                runout_hours: int | None, idempotency_key: str | None) -> Call[AutoRefill]:
    body: dict[str, object] = {"enabled": enabled, "threshold": threshold, "amount": amount}
    for name, value in (("threshold", threshold), ("amount", amount), ("daily_cap", daily_cap)):
        if value is not None:
            to_ucr(value)  # float-ok: refused here
            body[name] = value
    if runout_hours is not None:
        check_int("runout_hours", runout_hours)
        body["runout_hours"] = runout_hours
    return Call("PUT", _account_path(None, "/auto-refill"), _model(AutoRefill), json=body,
                idempotency_key=_new_key(idempotency_key))


def auto_refill_settings() -> Call[AutoRefill]:
    return Call("GET", _account_path(None, "/auto-refill"), _model(AutoRefill))


def save_card(success_url: str, cancel_url: str, idempotency_key: str | None) -> Call[CardSetup]:
    return Call("POST", _account_path(None, "/auto-refill/payment-method"), _model(CardSetup),
                json={"success_url": success_url, "cancel_url": cancel_url}, idempotency_key=_new_key(idempotency_key))


class PlanChange(_Model):
    """What ``PUT /plan`` did: ``checkout`` (send the customer to ``checkout_url``; the plan changes
    when Stripe says it was paid), ``scheduled`` (the new price from ``effective_at``), ``cancelling``
    (back to the free plan at ``effective_at``), ``resumed``, ``changed`` (now) or ``unchanged``."""

    status: str
    plan: str
    current_plan: str
    checkout_url: str | None = None
    session_id: str | None = None
    stripe_subscription: str | None = None
    effective_at: datetime | None = None


def plan(plan_id: str, success_url: str | None, cancel_url: str | None,
         idempotency_key: str | None) -> Call[PlanChange]:
    body: dict[str, object] = {"plan": plan_id}
    if success_url is not None:
        body["success_url"] = success_url
    if cancel_url is not None:
        body["cancel_url"] = cancel_url
    return Call("PUT", _account_path(None, "/plan"), _model(PlanChange), json=body,
                idempotency_key=_new_key(idempotency_key))
