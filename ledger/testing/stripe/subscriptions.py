"""Subscriptions, their invoices, saved cards and the billing portal.

A subscription starts from a Checkout Session, is paid by invoices (``subscription_create``, then
``subscription_cycle`` at each period end, charged to the customer's default card), can be
moved to another price or set to cancel at the period end, and ends with
``customer.subscription.deleted``.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any

from ledger.testing.stripe import billing_objects, forms, objects, payments
from ledger.testing.stripe.errors import invalid_request
from ledger.testing.stripe.store import Store, now


def period_end(start: int, interval: str, count: int) -> int:
    """``start`` plus ``count`` intervals, months by the calendar as Stripe bills them."""
    if interval in ("day", "week"):
        return start + count * (86400 if interval == "day" else 7 * 86400)
    months = count * (12 if interval == "year" else 1)
    when = dt.datetime.fromtimestamp(start, dt.UTC)
    month0 = when.month - 1 + months
    year, month = when.year + month0 // 12, month0 % 12 + 1
    day = min(when.day, calendar.monthrange(year, month)[1])
    return int(when.replace(year=year, month=month, day=day).timestamp())


def save_card(store: Store, customer_id: str, pm: dict[str, Any], *, setup_intent: str | None = None) -> None:
    """Attach ``pm`` to the customer and make it their default (a setup-mode checkout or the portal)."""
    payments.attach(store, pm["id"], customer_id)
    if setup_intent is not None:
        seti = store.get("setup_intent", setup_intent)
        seti.update(status="succeeded", payment_method=pm["id"], customer=customer_id)
        store.emit("setup_intent.succeeded", seti)
    payments.update_customer(store, customer_id, {"invoice_settings": {"default_payment_method": pm["id"]}})


def update_card(store: Store, customer_id: str, payment_method: str = "pm_card_visa") -> dict[str, Any]:
    """The customer enters a new card in the billing portal."""
    store.get("customer", customer_id, "customer")
    pm = payments.payment_method(store, payment_method)
    save_card(store, customer_id, pm)
    return pm


def start(store: Store, customer_id: str, pm: dict[str, Any], items: list[tuple[dict[str, Any], int]], *,
          metadata: dict[str, str], amount: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A subscription from a completed checkout, with its first invoice paid by ``pm``."""
    save_card(store, customer_id, pm)
    recurring = items[0][0]["recurring"]
    start_at = now()
    sub = store.add(billing_objects.subscription(
        customer=customer_id, items=items, start=start_at,
        end=period_end(start_at, recurring["interval"], recurring["interval_count"]),
        default_payment_method=pm["id"], metadata=metadata))
    store.emit("customer.subscription.created", sub)
    inv = _bill(store, sub, "subscription_create", amount=amount)
    return sub, inv


def _bill(store: Store, sub: dict[str, Any], reason: str, *, amount: int | None = None) -> dict[str, Any]:
    """Invoice ``sub``'s current period and charge its card: ``invoice.paid`` or ``invoice.payment_failed``."""
    cus = store.get("customer", sub["customer"])
    inv = store.add(billing_objects.invoice(sub, base_url=store.base_url, billing_reason=reason,
                                            customer_email=cus["email"]))
    inv["number"] = f"{cus['invoice_prefix']}-{cus['next_invoice_sequence']:04d}"
    cus["next_invoice_sequence"] += 1
    sub["latest_invoice"] = inv["id"]
    store.emit("invoice.created", inv)
    store.emit("invoice.finalized", inv)
    pm_id = sub["default_payment_method"] or cus["invoice_settings"]["default_payment_method"]
    pm = store.get("payment_method", pm_id, "default_payment_method")
    pi = store.add(objects.payment_intent(amount=inv["amount_due"], currency=inv["currency"], customer=cus["id"],
                                          payment_method=pm["id"], metadata={}, description="Subscription update"
                                          if reason != "subscription_create" else "Subscription creation"))
    inv["payment_intent"] = pi["id"]
    error = payments.attempt(store, pi, pm, off_session=reason != "subscription_create", amount=amount)
    inv.update(attempted=True, attempt_count=inv["attempt_count"] + 1, charge=pi["latest_charge"])
    if error is None:
        if sub["status"] == "past_due":
            sub["status"] = "active"
        mark_paid(store, inv, pi)
    else:
        previous = {"status": sub["status"]}
        sub["status"] = "past_due"
        store.emit("invoice.payment_failed", inv)
        store.emit("customer.subscription.updated", sub, previous)
    return inv


def mark_paid(store: Store, inv: dict[str, Any], pi: dict[str, Any]) -> None:
    """``pi`` paid ``inv``: ``invoice.paid`` and ``invoice.payment_succeeded``."""
    inv.update(status="paid", amount_paid=pi["amount_received"], amount_remaining=0, payment_intent=pi["id"],
               charge=pi["latest_charge"], attempted=True, attempt_count=max(1, inv["attempt_count"]))
    inv["status_transitions"]["paid_at"] = now()
    store.emit("invoice.paid", inv)
    store.emit("invoice.payment_succeeded", inv)


def end_period(store: Store, subscription_id: str) -> dict[str, Any]:
    """The current period ends: the subscription renews (a new ``subscription_cycle`` invoice) or,
    set to cancel at the period end, is deleted."""
    sub = store.get("subscription", subscription_id)
    if sub["status"] == "canceled":
        raise invalid_request(f"No such active subscription: '{subscription_id}'", param="subscription")
    if sub["cancel_at_period_end"]:
        return cancel(store, subscription_id, at=sub["current_period_end"])
    previous = {"current_period_start": sub["current_period_start"], "current_period_end": sub["current_period_end"]}
    recurring = sub["items"]["data"][0]["price"]["recurring"]
    start_at = sub["current_period_end"]
    end = period_end(start_at, recurring["interval"], recurring["interval_count"])
    sub.update(current_period_start=start_at, current_period_end=end)
    for item in sub["items"]["data"]:
        item.update(current_period_start=start_at, current_period_end=end)
    store.emit("customer.subscription.updated", sub, previous)
    _bill(store, sub, "subscription_cycle")
    return sub


def update(store: Store, subscription_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """Move to another price (``items[0][price]``), set ``cancel_at_period_end``, the
    ``default_payment_method`` or metadata."""
    sub = store.get("subscription", subscription_id)
    if sub["status"] == "canceled":
        raise invalid_request("A canceled subscription can only update its cancellation_details and metadata.",
                              param="subscription")
    previous: dict[str, Any] = {}
    if "cancel_at_period_end" in params:
        previous["cancel_at_period_end"] = sub["cancel_at_period_end"]
        sub["cancel_at_period_end"] = forms.as_bool(params, "cancel_at_period_end")
        sub["cancel_at"] = sub["current_period_end"] if sub["cancel_at_period_end"] else None
    if "default_payment_method" in params:  # empty: the customer's default card pays
        pm_id = forms.as_str(params, "default_payment_method")
        if pm_id is not None and store.get("payment_method", pm_id, "default_payment_method")["customer"] != sub[
                "customer"]:
            raise invalid_request(f"The payment method {pm_id} is not attached to the subscription's customer.",
                                  param="default_payment_method")
        previous["default_payment_method"] = sub["default_payment_method"]
        sub["default_payment_method"] = pm_id
    for i, raw in enumerate(forms.as_list(params, "items")):
        price_id = forms.as_str(raw, "price") if isinstance(raw, dict) else None
        if price_id is None:
            continue
        price = store.get("price", price_id, f"items[{i}][price]")
        item_id = forms.as_str(raw, "id") or sub["items"]["data"][0]["id"]
        item = next((x for x in sub["items"]["data"] if x["id"] == item_id), None)
        if item is None:
            raise invalid_request(f"No such subscription item: '{item_id}'", param=f"items[{i}][id]",
                                  code="resource_missing")
        previous.setdefault("items", {"object": "list", "data": [dict(x) for x in sub["items"]["data"]]})
        item["price"] = price
        item["quantity"] = forms.as_int(raw, "quantity", minimum=1) or item["quantity"]
    if "metadata" in params:
        previous["metadata"] = dict(sub["metadata"])
        payments.merge_metadata(sub, forms.metadata(params))
    store.emit("customer.subscription.updated", sub, previous)
    return sub


def cancel(store: Store, subscription_id: str, *, at: int | None = None) -> dict[str, Any]:
    sub = store.get("subscription", subscription_id)
    if sub["status"] == "canceled":
        raise invalid_request(f"No such subscription: '{subscription_id}'", param="id", code="resource_missing",
                              status=404)
    sub.update(status="canceled", canceled_at=now(), ended_at=at or now())
    sub["cancellation_details"]["reason"] = "cancellation_requested"
    store.emit("customer.subscription.deleted", sub)
    return sub


def create_portal_session(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    customer = forms.as_str(params, "customer", required=True)
    store.get("customer", customer or "", "customer")
    return store.add(billing_objects.portal_session(customer=customer or "", return_url=forms.as_str(
        params, "return_url"), base_url=store.base_url))
