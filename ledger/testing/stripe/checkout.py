"""Checkout Sessions: created by the API, completed (or failed, or expired) by the customer.

Completing a session in ``payment`` mode pays a new PaymentIntent; in ``subscription`` mode it
starts a subscription with its first paid invoice; in ``setup`` mode it saves the card on the
customer (and makes it their default). The events are the ones Stripe sends.
"""

from __future__ import annotations

from typing import Any, Literal

from ledger.testing.stripe import billing_objects, forms, objects, payments, subscriptions
from ledger.testing.stripe.errors import invalid_request
from ledger.testing.stripe.store import Store

Outcome = Literal["paid", "async"]


def create_price(store: Store, params: dict[str, Any], param: str = "price_data") -> dict[str, Any]:
    """A price from ``price_data`` / a ``POST /v1/prices`` body (with ``product`` or ``product_data``)."""
    currency = forms.as_str(params, "currency", required=True)
    unit_amount = forms.as_int(params, "unit_amount", required=True)
    assert currency is not None and unit_amount is not None
    product_id = forms.as_str(params, "product")
    if product_id is None:
        name = forms.as_str(forms.as_dict(params, "product_data"), "name")
        if name is None:
            raise invalid_request("Missing required param: product_data[name].", param=f"{param}[product_data][name]",
                                  code="parameter_missing")
        product_id = store.add(billing_objects.product(name))["id"]
    recurring = forms.as_dict(params, "recurring")
    shaped = None
    if recurring:
        interval = forms.as_str(recurring, "interval", required=True)
        if interval not in ("day", "week", "month", "year"):
            raise invalid_request(f"Invalid interval: {interval}", param=f"{param}[recurring][interval]")
        shaped = {"interval": interval, "interval_count": forms.as_int(recurring, "interval_count") or 1,
                  "meter": None, "trial_period_days": None, "usage_type": "licensed"}
    return store.add(billing_objects.price(currency=currency.lower(), unit_amount=unit_amount, product=product_id,
                                           recurring=shaped, metadata=forms.metadata(params)))


def create_session(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    mode = forms.as_str(params, "mode", required=True)
    if mode not in ("payment", "subscription", "setup"):
        raise invalid_request("Invalid mode: must be one of payment, setup, or subscription", param="mode")
    customer = forms.as_str(params, "customer")
    if customer is not None:
        store.get("customer", customer, "customer")
    items = []
    for i, raw in enumerate(forms.as_list(params, "line_items")):
        if not isinstance(raw, dict):
            raise invalid_request("Invalid line item.", param=f"line_items[{i}]")
        price_id = forms.as_str(raw, "price")
        price = store.get("price", price_id, f"line_items[{i}][price]") if price_id else \
            create_price(store, forms.as_dict(raw, "price_data"), f"line_items[{i}][price_data]")
        if (price["recurring"] is not None) != (mode == "subscription"):
            raise invalid_request(f"You must use {'recurring' if mode == 'subscription' else 'one-time'} prices in "
                                  f"`{mode}` mode.", param=f"line_items[{i}]")
        quantity = forms.as_int(raw, "quantity", minimum=1) or 1
        items.append(billing_objects.line_item(price, quantity, _product_name(store, price)))
    if mode != "setup" and not items:
        raise invalid_request(f"`line_items` is required in `{mode}` mode.", param="line_items",
                              code="parameter_missing")
    total = sum(item["amount_total"] for item in items) if items else None
    currency = items[0]["currency"] if items else (forms.as_str(params, "currency") or None)
    cs = billing_objects.checkout_session(mode=mode, base_url=store.base_url, amount_total=total, currency=currency,
                                          params={**params, "metadata": forms.metadata(params)})
    for name in ("payment_intent_data", "subscription_data", "setup_intent_data", "invoice_creation"):
        store.session_options.setdefault(cs["id"], {})[name] = forms.as_dict(params, name)
    invoicing = forms.as_dict(params, "invoice_creation")
    if invoicing:
        if mode != "payment":
            raise invalid_request("`invoice_creation` can only be used in `payment` mode.", param="invoice_creation")
        cs["invoice_creation"] = {"enabled": forms.as_bool(invoicing, "enabled"), "invoice_data": {
            "metadata": forms.metadata(forms.as_dict(invoicing, "invoice_data"))}}
    if mode == "setup":
        seti = store.add(objects.setup_intent(customer=customer, metadata=forms.metadata(
            forms.as_dict(params, "setup_intent_data"))))
        cs["setup_intent"] = seti["id"]
    store.line_items[cs["id"]] = items
    return store.add(cs)


def _product_name(store: Store, price: dict[str, Any]) -> str:
    product = store.objects.get(price["product"])
    return str(product["name"]) if product else str(price["product"])


def expire(store: Store, session_id: str) -> dict[str, Any]:
    cs = store.get("checkout.session", session_id, "session")
    if cs["status"] != "open":
        raise invalid_request(f"Only Checkout Sessions with a status of `open` can be expired. This session has a "
                              f"status of `{cs['status']}`.", param="session")
    cs["status"] = "expired"
    store.emit("checkout.session.expired", cs)
    return cs


def _customer_for(store: Store, cs: dict[str, Any]) -> str | None:
    """The session's customer, created now when Stripe would: in subscription and setup mode, with
    ``customer_creation=always``, to save the card (``setup_future_usage``) or to invoice the payment."""
    options = store.session_options.get(cs["id"], {})
    needed = (cs["mode"] != "payment" or cs["customer_creation"] == "always"
              or options.get("payment_intent_data", {}).get("setup_future_usage")
              or (cs["invoice_creation"] or {}).get("enabled"))
    if cs["customer"] is None and needed:
        cus = payments.create_customer(store, {"email": cs["customer_email"] or "customer@example.com"})
        cs["customer"] = cus["id"]
    email = cs["customer_email"] or (store.objects[cs["customer"]]["email"] if cs["customer"] else None)
    cs["customer_details"] = {"address": None, "email": email or "customer@example.com", "name": None,
                              "phone": None, "tax_exempt": "none", "tax_ids": []}
    customer: str | None = cs["customer"]
    return customer


def _open(store: Store, session_id: str) -> dict[str, Any]:
    cs = store.get("checkout.session", session_id, "session")
    if cs["status"] != "open":
        raise invalid_request(f"This Checkout Session is {cs['status']}, not open.", param="session")
    return cs


def _payment_intent(store: Store, cs: dict[str, Any], pm: dict[str, Any], amount: int | None) -> dict[str, Any]:
    data = store.session_options.get(cs["id"], {}).get("payment_intent_data", {})
    pi = store.objects.get(cs["payment_intent"] or "")
    if pi is None:
        pi = store.add(objects.payment_intent(
            amount=amount if amount is not None else cs["amount_total"], currency=cs["currency"],
            customer=cs["customer"], payment_method=pm["id"], metadata=forms.metadata(data),
            description=forms.as_str(data, "description"),
            setup_future_usage=forms.as_str(data, "setup_future_usage")))
        cs["payment_intent"] = pi["id"]
        store.emit("payment_intent.created", pi)
    elif pi["customer"] is None:  # a declined attempt made it before the session had a customer
        pi["customer"] = cs["customer"]
    return pi


def complete(store: Store, session_id: str, *, outcome: Outcome = "paid", amount: int | None = None,
             payment_method: str = "pm_card_visa") -> dict[str, Any]:
    """The customer pays: ``paid`` at once, or ``async`` (paid later by ``settle_async``);
    ``amount`` overrides what was paid (an underpayment)."""
    cs = _open(store, session_id)
    if amount is not None and amount < 1:
        raise invalid_request("The amount paid must be at least 1.", param="amount")
    if outcome not in ("paid", "async"):
        raise invalid_request("outcome must be paid or async", param="outcome")
    pm = payments.payment_method(store, payment_method)
    outcome_of_card, decline_code = store.card_outcomes.get(pm["id"], ("succeed", None))
    if cs["mode"] == "subscription" and outcome_of_card != "succeed":  # declined on the page: nothing starts
        raise payments.card_error(outcome_of_card, decline_code)
    customer = _customer_for(store, cs)
    if amount is not None:
        cs["amount_total"] = cs["amount_subtotal"] = amount
    if cs["mode"] == "setup":
        subscriptions.save_card(store, customer or "", pm, setup_intent=cs["setup_intent"])
    elif cs["mode"] == "subscription":
        options = store.session_options.get(cs["id"], {}).get("subscription_data", {})
        items = [(li["price"], li["quantity"]) for li in store.line_items[cs["id"]]]
        sub, inv = subscriptions.start(store, customer or "", pm, items, metadata=forms.metadata(options),
                                       amount=amount)
        cs.update(subscription=sub["id"], invoice=inv["id"], payment_status="paid" if inv["status"] == "paid"
                  else "unpaid")
    else:
        pi = _payment_intent(store, cs, pm, amount)
        if outcome == "async":
            pi.update(status="processing", payment_method=pm["id"],
                      processing={"type": "card", "card": {"customer_notification": None}})
            store.emit("payment_intent.processing", pi)
        else:
            error = payments.attempt(store, pi, pm, off_session=False, amount=amount)
            if error is not None:
                raise error  # the customer sees the decline; the session stays open
            _paid(store, cs, pi, pm)
    cs["status"] = "complete"
    store.emit("checkout.session.completed", cs)
    return cs


def _paid(store: Store, cs: dict[str, Any], pi: dict[str, Any], pm: dict[str, Any]) -> None:
    """A payment-mode session is paid: save the card (``setup_future_usage``), invoice it if asked."""
    cs["payment_status"] = "paid"
    if pi["setup_future_usage"] and cs["customer"]:
        payments.attach(store, pm["id"], cs["customer"])
    if (cs["invoice_creation"] or {}).get("enabled") and cs["customer"]:
        inv = store.add(billing_objects.one_off_invoice(
            store.line_items[cs["id"]], customer=cs["customer"], base_url=store.base_url,
            customer_email=cs["customer_details"]["email"],
            metadata=cs["invoice_creation"]["invoice_data"]["metadata"]))
        store.emit("invoice.created", inv)
        store.emit("invoice.finalized", inv)
        subscriptions.mark_paid(store, inv, pi)
        cs["invoice"] = inv["id"]


def settle_async(store: Store, session_id: str, *, succeeded: bool) -> dict[str, Any]:
    """The delayed payment of a completed, unpaid session succeeds or fails."""
    cs = store.get("checkout.session", session_id, "session")
    pi = store.objects.get(cs["payment_intent"] or "")
    if cs["status"] != "complete" or cs["payment_status"] != "unpaid" or pi is None or pi["status"] != "processing":
        raise invalid_request("This Checkout Session has no payment in processing.", param="session")
    pm = store.get("payment_method", pi["payment_method"], "payment_method")
    if succeeded:
        payments.attempt(store, pi, pm, off_session=False)
        _paid(store, cs, pi, pm)
        store.emit("checkout.session.async_payment_succeeded", cs)
    else:
        store.card_outcomes[pm["id"]] = ("decline", "generic_decline")
        payments.attempt(store, pi, pm, off_session=False)
        store.emit("checkout.session.async_payment_failed", cs)
    return cs


def fail(store: Store, session_id: str, *, payment_method: str = "pm_card_chargeDeclined") -> dict[str, Any]:
    """The customer's card is declined at checkout: the PaymentIntent fails, the session stays open."""
    cs = _open(store, session_id)
    if cs["mode"] != "payment":
        raise invalid_request("Only a payment-mode session can fail a payment here.", param="session")
    pm = payments.payment_method(store, payment_method)
    if store.card_outcomes.get(pm["id"], ("succeed", None))[0] == "succeed":
        store.card_outcomes[pm["id"]] = ("decline", "generic_decline")
    pi = _payment_intent(store, cs, pm, None)
    payments.attempt(store, pi, pm, off_session=False)
    return pi
