"""What Stripe does with customers, payment methods, payment intents, refunds and disputes.

Each function runs under the store's lock (the caller holds it), changes the objects, emits the
events Stripe would and returns the object the API answers with; a refusal is a ``StripeError``.
"""

from __future__ import annotations

from typing import Any

from ledger.testing.stripe import forms, objects
from ledger.testing.stripe.cards import DECLINE_MESSAGES, TEST_CARDS
from ledger.testing.stripe.errors import StripeError, invalid_request
from ledger.testing.stripe.store import Store


def money(amount: int, currency: str) -> str:
    """``$5.00`` for Stripe's messages (integer cents only: exact)."""
    sign = "$" if currency == "usd" else f"{currency.upper()} "
    return f"{sign}{amount // 100}.{amount % 100:02d}"


def create_customer(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    cus = store.add(objects.customer(email=forms.as_str(params, "email"), name=forms.as_str(params, "name"),
                                     metadata=forms.metadata(params)))
    store.emit("customer.created", cus)
    return cus


def update_customer(store: Store, customer_id: str, params: dict[str, Any]) -> dict[str, Any]:
    cus = store.get("customer", customer_id)
    previous: dict[str, Any] = {}
    for name in ("email", "name", "description", "phone"):
        if name in params:
            previous[name] = cus[name]
            cus[name] = forms.as_str(params, name)
    if "metadata" in params:
        previous["metadata"] = dict(cus["metadata"])
        merge_metadata(cus, forms.metadata(params))
    settings = forms.as_dict(params, "invoice_settings")
    if "default_payment_method" in settings:
        pm_id = forms.as_str(settings, "default_payment_method")
        if pm_id is not None:
            pm = store.get("payment_method", pm_id, "invoice_settings[default_payment_method]")
            if pm["customer"] != customer_id:
                raise invalid_request(f"The payment method {pm_id} is not attached to customer {customer_id}.",
                                      param="invoice_settings[default_payment_method]")
        previous["invoice_settings"] = dict(cus["invoice_settings"])
        cus["invoice_settings"]["default_payment_method"] = pm_id
    store.emit("customer.updated", cus, previous)
    return cus


def merge_metadata(obj: dict[str, Any], new: dict[str, str]) -> None:
    """Stripe's metadata update: keys are set one by one, and an empty value unsets its key."""
    for key, value in new.items():
        if value == "":
            obj["metadata"].pop(key, None)
        else:
            obj["metadata"][key] = value


def payment_method(store: Store, ref: str, param: str = "payment_method") -> dict[str, Any]:
    """The payment method ``ref``; a test token (``pm_card_visa``) makes a fresh one, as Stripe does."""
    card = TEST_CARDS.get(ref)
    if card is None:
        return store.get("payment_method", ref, param)
    pm = store.add(objects.payment_method(card))
    store.card_outcomes[pm["id"]] = (card.outcome, card.decline_code)
    return pm


def attach(store: Store, ref: str, customer_id: str) -> dict[str, Any]:
    cus = store.get("customer", customer_id, "customer")
    pm = payment_method(store, ref, "id")
    if pm["customer"] not in (None, cus["id"]):
        raise invalid_request("The payment method you provided has already been attached to a customer.",
                              param="customer")
    pm["customer"] = cus["id"]
    store.emit("payment_method.attached", pm)
    return pm


def create_payment_intent(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    amount = forms.as_int(params, "amount", required=True, minimum=1)
    currency = forms.as_str(params, "currency", required=True)
    assert amount is not None and currency is not None
    customer = forms.as_str(params, "customer")
    if customer is not None:
        store.get("customer", customer, "customer")
    pm_ref = forms.as_str(params, "payment_method")
    pm = payment_method(store, pm_ref) if pm_ref else None
    off_session = params.get("off_session") not in (None, "false")
    pi = store.add(objects.payment_intent(
        amount=amount, currency=currency.lower(), customer=customer, payment_method=pm["id"] if pm else None,
        metadata=forms.metadata(params), description=forms.as_str(params, "description"),
        setup_future_usage=forms.as_str(params, "setup_future_usage")))
    store.emit("payment_intent.created", pi)
    if forms.as_bool(params, "confirm"):
        if pm is None:
            raise invalid_request("You cannot confirm this PaymentIntent because it's missing a payment method.",
                                  param="payment_method", code="payment_intent_unexpected_state")
        error = attempt(store, pi, pm, off_session=off_session)
        if error is not None:
            raise error
    return pi


def attempt(store: Store, pi: dict[str, Any], pm: dict[str, Any], *, off_session: bool,
            amount: int | None = None) -> StripeError | None:
    """Charge ``pm`` for ``pi`` (``amount`` overrides what is received); the card error on a failure."""
    outcome, decline_code = store.card_outcomes.get(pm["id"], ("succeed", None))
    pi["payment_method"] = pm["id"]
    if outcome == "authenticate" and not off_session:
        pi["status"] = "requires_action"
        pi["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}}
        store.emit("payment_intent.requires_action", pi)
        return None
    if outcome == "succeed":
        if amount is not None:
            pi["amount"] = amount
        ch = store.add(objects.charge(pi, pm, base_url=store.base_url, paid=True))
        pi.update(status="succeeded", amount_received=pi["amount"], latest_charge=ch["id"],
                  last_payment_error=None, next_action=None)
        store.emit("charge.succeeded", ch)
        store.emit("payment_intent.succeeded", pi)
        return None
    code, message = _decline(outcome, decline_code)
    ch = store.add(objects.charge(pi, pm, base_url=store.base_url, paid=False, failure=(code, message)))
    error_body = {"type": "card_error", "code": code, "decline_code": decline_code, "message": message,
                  "charge": ch["id"], "payment_method": pm,
                  "doc_url": f"https://docs.stripe.com/error-codes/{code.replace('_', '-')}"}
    pi.update(latest_charge=ch["id"], last_payment_error=error_body)
    if outcome == "authenticate":
        pi["status"] = "requires_action"
        pi["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}}
    else:
        pi["status"] = "requires_payment_method"
        pi["payment_method"] = None
    store.emit("charge.failed", ch)
    store.emit("payment_intent.payment_failed", pi)
    return StripeError(402, "card_error", message, code=code, decline_code=decline_code, param="",
                       charge=ch["id"], payment_intent=pi, payment_method=pm, doc_url=error_body["doc_url"])


def _decline(outcome: str, decline_code: str | None) -> tuple[str, str]:
    return ("authentication_required" if outcome == "authenticate" else "card_declined",
            DECLINE_MESSAGES[decline_code or "generic_decline"])


def card_error(outcome: str, decline_code: str | None) -> StripeError:
    """The 402 a declining card answers with where no PaymentIntent is involved (a hosted page)."""
    code, message = _decline(outcome, decline_code)
    return StripeError(402, "card_error", message, code=code, decline_code=decline_code, param="")


def charge_of(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """The charge named by ``charge`` or by ``payment_intent`` (its latest, succeeded charge)."""
    charge_id = forms.as_str(params, "charge")
    if charge_id is not None:
        return store.get("charge", charge_id, "charge")
    pi_id = forms.as_str(params, "payment_intent")
    if pi_id is None:
        raise invalid_request("One of the following params should be provided for this request: payment_intent or "
                              "charge.", param="payment_intent", code="parameter_missing")
    pi = store.get("payment_intent", pi_id, "payment_intent")
    if pi["status"] != "succeeded" or pi["latest_charge"] is None:
        raise invalid_request(f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                              param="payment_intent", code="charge_not_refundable")
    return store.get("charge", pi["latest_charge"], "payment_intent")


def create_refund(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    ch = charge_of(store, params)
    left = ch["amount_captured"] - ch["amount_refunded"]
    if left <= 0:
        raise invalid_request(f"Charge {ch['id']} has already been refunded.", code="charge_already_refunded")
    amount = forms.as_int(params, "amount", minimum=1)
    if amount is None:
        amount = left
    elif amount > left:
        raise invalid_request(f"Refund amount ({money(amount, ch['currency'])}) is greater than unrefunded amount "
                              f"on charge ({money(left, ch['currency'])})", param="amount", code="amount_too_large")
    reason = forms.as_str(params, "reason")
    if reason not in (None, "duplicate", "fraudulent", "requested_by_customer"):
        raise invalid_request("Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
                              param="reason")
    re_ = store.add(objects.refund(ch, amount=amount, reason=reason, metadata=forms.metadata(params)))
    previous = {"amount_refunded": ch["amount_refunded"], "refunded": ch["refunded"]}
    ch["amount_refunded"] += amount
    ch["refunded"] = ch["amount_refunded"] == ch["amount_captured"]
    store.emit("refund.created", re_)
    store.emit("charge.refunded", ch, previous)
    return re_


def open_dispute(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    ch = charge_of(store, params)
    amount = forms.as_int(params, "amount", minimum=1) or ch["amount_captured"] - ch["amount_refunded"]
    du = store.add(objects.dispute(ch, amount=amount, reason=forms.as_str(params, "reason") or "fraudulent"))
    ch["disputed"] = True
    store.emit("charge.dispute.created", du)
    return du


def close_dispute(store: Store, dispute_id: str, *, won: bool) -> dict[str, Any]:
    du = store.get("dispute", dispute_id)
    if du["status"] in ("won", "lost"):
        raise invalid_request(f"Dispute {dispute_id} is already closed.", code="dispute_already_closed")
    previous = {"status": du["status"]}
    du["status"] = "won" if won else "lost"
    store.emit("charge.dispute.closed", du, previous)
    return du
