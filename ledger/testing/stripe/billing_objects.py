"""Shape builders for Stripe's billing objects, with the fields of Stripe's published OpenAPI
description: product, price, checkout.session and its line items, subscription, invoice and
billing_portal.session.
"""

from __future__ import annotations

from typing import Any

from ledger.testing.stripe.store import new_id, now


def product(name: str) -> dict[str, Any]:
    return {"id": new_id("prod_", 14), "object": "product", "active": True, "created": now(), "default_price": None,
            "description": None, "images": [], "livemode": False, "metadata": {}, "name": name,
            "tax_code": None, "updated": now(), "url": None}


def price(*, currency: str, unit_amount: int, product: str, recurring: dict[str, Any] | None,
          metadata: dict[str, str] | None = None) -> dict[str, Any]:
    return {"id": new_id("price_"), "object": "price", "active": True, "billing_scheme": "per_unit",
            "created": now(), "currency": currency, "custom_unit_amount": None, "livemode": False, "lookup_key": None,
            "metadata": metadata or {}, "nickname": None, "product": product,
            "recurring": recurring, "tax_behavior": "unspecified", "tiers_mode": None, "transform_quantity": None,
            "type": "recurring" if recurring else "one_time", "unit_amount": unit_amount,
            "unit_amount_decimal": str(unit_amount)}


def line_item(price_obj: dict[str, Any], quantity: int, description: str) -> dict[str, Any]:
    total = price_obj["unit_amount"] * quantity
    return {"id": new_id("li_"), "object": "item", "amount_discount": 0, "amount_subtotal": total,
            "amount_tax": 0, "amount_total": total, "currency": price_obj["currency"], "description": description,
            "price": price_obj, "quantity": quantity}


def checkout_session(*, mode: str, base_url: str, amount_total: int | None, currency: str | None,
                     params: dict[str, Any]) -> dict[str, Any]:
    """An open session; ``params`` holds the decoded options that are copied onto it as they are."""
    cs_id = new_id("cs_test_", 58)
    return {
        "id": cs_id, "object": "checkout.session", "after_expiration": None, "allow_promotion_codes": None,
        "amount_subtotal": amount_total, "amount_total": amount_total,
        "automatic_tax": {"enabled": False, "liability": None, "status": None},
        "billing_address_collection": None, "cancel_url": params.get("cancel_url"),
        "client_reference_id": params.get("client_reference_id"), "client_secret": None,
        "consent": None, "consent_collection": None, "created": now(), "currency": currency,
        "custom_fields": [], "custom_text": {"after_submit": None, "shipping_address": None, "submit": None,
                                             "terms_of_service_acceptance": None},
        "customer": params.get("customer"), "customer_creation": params.get("customer_creation"),
        "customer_details": None, "customer_email": params.get("customer_email"),
        "expires_at": now() + 24 * 3600, "invoice": None, "invoice_creation": None, "livemode": False,
        "locale": None, "metadata": params.get("metadata") or {}, "mode": mode, "payment_intent": None,
        "payment_link": None, "payment_method_collection": "always", "payment_method_options": {},
        "payment_method_types": ["card"], "payment_status": "no_payment_required" if mode == "setup" else "unpaid",
        "phone_number_collection": {"enabled": False}, "recovered_from": None, "setup_intent": None,
        "shipping_address_collection": None, "shipping_cost": None, "shipping_options": [], "status": "open",
        "submit_type": None, "subscription": None, "success_url": params.get("success_url"),
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0}, "ui_mode": "hosted",
        "url": f"{base_url}/_standin/checkout/{cs_id}",
    }


def subscription(*, customer: str, items: list[tuple[dict[str, Any], int]], start: int, end: int,
                 default_payment_method: str | None, metadata: dict[str, str]) -> dict[str, Any]:
    sub_id = new_id("sub_")
    sub_items = [subscription_item(sub_id, p, q, start, end) for p, q in items]
    return {
        "id": sub_id, "object": "subscription", "application": None, "application_fee_percent": None,
        "automatic_tax": {"enabled": False, "liability": None}, "billing_cycle_anchor": start,
        "billing_cycle_anchor_config": None, "cancel_at": None, "cancel_at_period_end": False, "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically", "created": start, "currency": items[0][0]["currency"],
        # Top-level period fields as older API versions had them; the items carry them too.
        "current_period_end": end, "current_period_start": start,
        "customer": customer, "days_until_due": None, "default_payment_method": default_payment_method,
        "default_source": None, "default_tax_rates": [], "description": None, "discounts": [], "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {"object": "list", "data": sub_items, "has_more": False,
                  "url": f"/v1/subscription_items?subscription={sub_id}"},
        "latest_invoice": None, "livemode": False, "metadata": metadata, "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None, "pause_collection": None,
        "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                             "save_default_payment_method": "off"},
        "pending_invoice_item_interval": None, "pending_setup_intent": None, "pending_update": None,
        "schedule": None, "start_date": start, "status": "active", "test_clock": None, "transfer_data": None,
        "trial_end": None, "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None,
    }


def subscription_item(sub_id: str, price_obj: dict[str, Any], quantity: int, start: int, end: int) -> dict[str, Any]:
    return {"id": new_id("si_", 14), "object": "subscription_item", "created": start, "current_period_end": end,
            "current_period_start": start, "discounts": [], "metadata": {}, "price": price_obj,
            "quantity": quantity, "subscription": sub_id, "tax_rates": []}


def invoice(sub: dict[str, Any], *, base_url: str, billing_reason: str, customer_email: str | None) -> dict[str, Any]:
    """An open invoice for ``sub``'s current period; ``subscriptions`` pays or fails it."""
    in_id = new_id("in_")
    period = {"start": sub["current_period_start"], "end": sub["current_period_end"]}
    lines = [_line(in_id, item["price"], item["quantity"], sub["currency"], period, dict(sub["metadata"]), {
        "invoice_item_details": None, "subscription_item_details": {
            "invoice_item": None, "proration": False, "proration_details": {"credited_items": None},
            "subscription": sub["id"], "subscription_item": item["id"]}, "type": "subscription_item_details"},
        sub["id"], f"{item['quantity']} × subscription") for item in sub["items"]["data"]]
    inv = _invoice(in_id, lines, customer=sub["customer"], currency=sub["currency"], base_url=base_url,
                   billing_reason=billing_reason, customer_email=customer_email, period=period)
    inv.update(subscription=sub["id"], parent={
        "quote_details": None, "subscription_details": {"metadata": dict(sub["metadata"]), "subscription": sub["id"]},
        "type": "subscription_details"})
    return inv


def one_off_invoice(items: list[dict[str, Any]], *, customer: str, base_url: str, customer_email: str | None,
                    metadata: dict[str, str]) -> dict[str, Any]:
    """The invoice of a payment-mode checkout with ``invoice_creation[enabled]`` (paid with it)."""
    in_id = new_id("in_")
    at = now()
    lines = [_line(in_id, item["price"], item["quantity"], item["currency"], {"start": at, "end": at}, {},
                   {"invoice_item_details": {"invoice_item": new_id("ii_"), "proration": False,
                                             "proration_details": {"credited_items": None}, "subscription": None},
                    "subscription_item_details": None, "type": "invoice_item_details"}, None, item["description"])
             for item in items]
    inv = _invoice(in_id, lines, customer=customer, currency=items[0]["currency"], base_url=base_url,
                   billing_reason="manual", customer_email=customer_email, period={"start": at, "end": at})
    inv["metadata"] = dict(metadata)
    return inv


def _line(in_id: str, price_obj: dict[str, Any], quantity: int, currency: str, period: dict[str, int],
          metadata: dict[str, str], parent: dict[str, Any], subscription: str | None, description: str
          ) -> dict[str, Any]:
    return {
        "id": new_id("il_"), "object": "line_item", "amount": price_obj["unit_amount"] * quantity, "currency": currency,
        "description": description, "discount_amounts": [], "discountable": True, "discounts": [], "invoice": in_id,
        "livemode": False, "metadata": metadata, "parent": parent, "period": dict(period),
        "pretax_credit_amounts": [], "pricing": {"price_details": {"price": price_obj["id"],
                                                                    "product": price_obj["product"]},
                                                 "type": "price_details",
                                                 "unit_amount_decimal": price_obj["unit_amount_decimal"]},
        "quantity": quantity, "subscription": subscription, "taxes": [],
    }


def _invoice(in_id: str, lines: list[dict[str, Any]], *, customer: str, currency: str, base_url: str,
             billing_reason: str, customer_email: str | None, period: dict[str, int]) -> dict[str, Any]:
    total = sum(line["amount"] for line in lines)
    return {
        "id": in_id, "object": "invoice", "account_country": "US", "account_name": "Credit Ledger",
        "amount_due": total, "amount_overpaid": 0, "amount_paid": 0, "amount_remaining": total,
        "amount_shipping": 0, "attempt_count": 0, "attempted": False, "auto_advance": True,
        "billing_reason": billing_reason, "collection_method": "charge_automatically", "created": now(),
        "currency": currency, "customer": customer, "customer_email": customer_email,
        "default_payment_method": None, "description": None, "discounts": [], "due_date": None,
        "effective_at": now(), "ending_balance": 0, "hosted_invoice_url": f"{base_url}/_standin/invoices/{in_id}",
        "invoice_pdf": f"{base_url}/_standin/invoices/{in_id}/pdf", "issuer": {"type": "self"},
        "last_finalization_error": None, "lines": {"object": "list", "data": lines, "has_more": False,
                                                   "url": f"/v1/invoices/{in_id}/lines"},
        "livemode": False, "metadata": {}, "next_payment_attempt": None, "number": None, "parent": None,
        # Stripe: a subscription invoice's period is the one that just ended (the lines carry the new one).
        "period_end": period["start"], "period_start": period["start"],
        "receipt_number": None, "starting_balance": 0, "statement_descriptor": None, "status": "open",
        "status_transitions": {"finalized_at": now(), "marked_uncollectible_at": None, "paid_at": None,
                               "voided_at": None},
        # Older API versions name the subscription (and the payment) on the invoice itself.
        "subscription": None, "payment_intent": None, "charge": None,
        "subtotal": total, "subtotal_excluding_tax": total, "test_clock": None, "total": total,
        "total_discount_amounts": [], "total_excluding_tax": total, "total_taxes": [],
        "webhooks_delivered_at": None,
    }


def portal_session(*, customer: str, return_url: str | None, base_url: str) -> dict[str, Any]:
    bps_id = new_id("bps_")
    return {"id": bps_id, "object": "billing_portal.session", "configuration": new_id("bpc_"), "created": now(),
            "customer": customer, "flow": None, "livemode": False, "locale": None, "on_behalf_of": None,
            "return_url": return_url, "url": f"{base_url}/_standin/portal/{bps_id}"}
