"""Shape builders for Stripe's payment objects, with the fields of Stripe's published OpenAPI
description (customer, payment_method, setup_intent, payment_intent, charge, refund, dispute)
and the list envelope. Builders only shape; ``payments`` decides what goes in them.
"""

from __future__ import annotations

from typing import Any

from ledger.testing.stripe import forms
from ledger.testing.stripe.cards import TestCard
from ledger.testing.stripe.errors import invalid_request
from ledger.testing.stripe.store import new_id, now

_ADDRESS = {"city": None, "country": None, "line1": None, "line2": None, "postal_code": None, "state": None}


def page(items: list[dict[str, Any]], url: str, params: dict[str, Any]) -> dict[str, Any]:
    """Stripe's list envelope over ``items`` (newest first), honouring limit/starting_after/ending_before."""
    limit = forms.as_int(params, "limit", minimum=1) or 10
    if limit > 100:
        raise invalid_request("This value must be less than or equal to 100.", param="limit")
    ids = [o["id"] for o in items]
    if params.get("starting_after") in ids:
        items = items[ids.index(params["starting_after"]) + 1:]
    elif params.get("ending_before") in ids:
        items = items[:ids.index(params["ending_before"])][-limit:]
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": url}


def customer(*, email: str | None, name: str | None, metadata: dict[str, str]) -> dict[str, Any]:
    return {
        "id": new_id("cus_", 14), "object": "customer", "address": None, "balance": 0, "created": now(),
        "currency": None, "default_source": None, "delinquent": False, "description": None, "discount": None,
        "email": email, "invoice_prefix": new_id("", 8).upper(),
        "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                             "rendering_options": None},
        "livemode": False, "metadata": metadata, "name": name, "next_invoice_sequence": 1, "phone": None,
        "preferred_locales": [], "shipping": None, "tax_exempt": "none", "test_clock": None,
    }


def payment_method(card: TestCard, *, customer: str | None = None) -> dict[str, Any]:
    return {
        "id": new_id("pm_"), "object": "payment_method", "allow_redisplay": "unspecified",
        "billing_details": {"address": dict(_ADDRESS), "email": None, "name": None, "phone": None, "tax_id": None},
        "card": {
            "brand": card.brand, "checks": {"address_line1_check": None, "address_postal_code_check": None,
                                            "cvc_check": "pass"},
            "country": "US", "display_brand": card.brand, "exp_month": 12, "exp_year": 2034,
            "fingerprint": new_id("", 16), "funding": "credit", "generated_from": None, "last4": card.last4,
            "networks": {"available": [card.brand], "preferred": None},
            "three_d_secure_usage": {"supported": True}, "wallet": None, "regulated_status": "unregulated",
        },
        "created": now(), "customer": customer, "livemode": False, "metadata": {}, "type": "card",
    }


def setup_intent(*, customer: str | None, metadata: dict[str, str], usage: str = "off_session") -> dict[str, Any]:
    seti_id = new_id("seti_")
    return {
        "id": seti_id, "object": "setup_intent", "application": None, "automatic_payment_methods": None,
        "cancellation_reason": None, "client_secret": f"{seti_id}_secret_{new_id('', 24)}", "created": now(),
        "customer": customer, "description": None, "flow_directions": None, "last_setup_error": None,
        "latest_attempt": None, "livemode": False, "mandate": None, "metadata": metadata, "next_action": None,
        "on_behalf_of": None, "payment_method": None, "payment_method_configuration_details": None,
        "payment_method_options": {}, "payment_method_types": ["card"], "single_use_mandate": None,
        "status": "requires_payment_method", "usage": usage,
    }


def payment_intent(*, amount: int, currency: str, customer: str | None, payment_method: str | None,
                   metadata: dict[str, str], description: str | None = None,
                   setup_future_usage: str | None = None) -> dict[str, Any]:
    pi_id = new_id("pi_")
    return {
        "id": pi_id, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
        "amount_details": {"tip": {}}, "amount_received": 0, "application": None, "application_fee_amount": None,
        "automatic_payment_methods": None, "canceled_at": None, "cancellation_reason": None,
        "capture_method": "automatic", "client_secret": f"{pi_id}_secret_{new_id('', 24)}",
        "confirmation_method": "automatic", "created": now(), "currency": currency, "customer": customer,
        "description": description, "last_payment_error": None, "latest_charge": None, "livemode": False,
        "metadata": metadata, "next_action": None, "on_behalf_of": None, "payment_method": payment_method,
        "payment_method_configuration_details": None, "payment_method_options": {},
        "payment_method_types": ["card"], "processing": None, "receipt_email": None, "review": None,
        "setup_future_usage": setup_future_usage, "shipping": None, "statement_descriptor": None,
        "statement_descriptor_suffix": None, "status": "requires_payment_method", "transfer_data": None,
        "transfer_group": None,
    }


def charge(pi: dict[str, Any], pm: dict[str, Any], *, base_url: str, paid: bool,
           failure: tuple[str, str] | None = None) -> dict[str, Any]:
    """A charge for ``pi`` with ``pm``; ``failure`` = (code, message) for a declined one."""
    ch_id = new_id("ch_")
    card = pm["card"]
    return {
        "id": ch_id, "object": "charge", "amount": pi["amount"], "amount_captured": pi["amount"] if paid else 0,
        "amount_refunded": 0, "application": None, "application_fee": None, "application_fee_amount": None,
        "balance_transaction": new_id("txn_") if paid else None,
        "billing_details": pm["billing_details"], "calculated_statement_descriptor": "CREDIT LEDGER",
        "captured": paid, "created": now(), "currency": pi["currency"], "customer": pi["customer"],
        "description": pi["description"], "disputed": False, "failure_balance_transaction": None,
        "failure_code": failure[0] if failure else None, "failure_message": failure[1] if failure else None,
        "fraud_details": {}, "livemode": False, "metadata": dict(pi["metadata"]), "on_behalf_of": None,
        "outcome": {
            "advice_code": None, "network_advice_code": None, "network_decline_code": None,
            "network_status": "approved_by_network" if paid else "declined_by_network",
            "reason": None if paid else (failure[0] if failure else None), "risk_level": "normal",
            "seller_message": "Payment complete." if paid else "The bank did not return any further details.",
            "type": "authorized" if paid else "issuer_declined",
        },
        "paid": paid, "payment_intent": pi["id"], "payment_method": pm["id"],
        "payment_method_details": {"card": {
            "amount_authorized": pi["amount"] if paid else None, "brand": card["brand"], "checks": card["checks"],
            "country": "US", "exp_month": card["exp_month"], "exp_year": card["exp_year"],
            "fingerprint": card["fingerprint"], "funding": "credit", "last4": card["last4"], "network": card["brand"],
            "three_d_secure": None, "wallet": None}, "type": "card"},
        "receipt_email": None, "receipt_number": None,
        "receipt_url": f"{base_url}/_standin/receipts/{ch_id}",
        "refunded": False, "review": None, "shipping": None, "source_transfer": None,
        "statement_descriptor": None, "statement_descriptor_suffix": None,
        "status": "succeeded" if paid else "failed", "transfer_data": None, "transfer_group": None,
    }


def refund(ch: dict[str, Any], *, amount: int, reason: str | None, metadata: dict[str, str]) -> dict[str, Any]:
    return {
        "id": new_id("re_"), "object": "refund", "amount": amount, "balance_transaction": new_id("txn_"),
        "charge": ch["id"], "created": now(), "currency": ch["currency"],
        "destination_details": {"card": {"type": "refund"}, "type": "card"}, "metadata": metadata,
        "payment_intent": ch["payment_intent"], "reason": reason, "receipt_number": None,
        "source_transfer_reversal": None, "status": "succeeded", "transfer_reversal": None,
    }


def dispute(ch: dict[str, Any], *, amount: int, reason: str) -> dict[str, Any]:
    return {
        "id": new_id("du_"), "object": "dispute", "amount": amount, "balance_transactions": [],
        "charge": ch["id"], "created": now(), "currency": ch["currency"], "evidence": {},
        "evidence_details": {"due_by": now() + 7 * 86400, "has_evidence": False, "past_due": False,
                             "submission_count": 0},
        "is_charge_refundable": False, "livemode": False, "metadata": {},
        "payment_intent": ch["payment_intent"],
        "payment_method_details": {"card": {"brand": ch["payment_method_details"]["card"]["brand"],
                                            "case_type": "chargeback", "network_reason_code": None}, "type": "card"},
        "reason": reason, "status": "needs_response",
    }
