"""Stripe events -> ledger commands, without a network (``ledger.billing.stripe_events``), and
checkout pricing from the rate card (``ledger.billing.checkout``)."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from ledger import commands as c
from ledger.billing.checkout import SOURCE, metadata, price, session_params
from ledger.billing.stripe_events import (
    Notice,
    PurchaseFacts,
    cents_for_credits,
    classify,
    credits_for_cents,
    dispute_commands,
    purchase_command,
    purchase_key,
    refund_command,
)
from ledger.errors import InvalidRequest, PurchaseRejected, UnknownPack
from tests.cards import frozen_rate_card

CARD = frozen_rate_card()
UCR = 1_000_000


def session(*, pack: str | None = "builder", paid: int = 5000, status: str = "paid", mode: str = "payment",
            credits_ucr: int = 50 * UCR) -> dict[str, Any]:
    priced = price(CARD, pack, None if pack else credits_ucr)
    return {"id": "cs_test_1", "object": "checkout.session", "mode": mode, "payment_status": status,
            "amount_total": paid, "currency": "usd", "payment_intent": "pi_1", "customer": "cus_1",
            "metadata": metadata("acct-1", priced, "k-1", CARD.version)}


def event(etype: str, obj: dict[str, Any], event_id: str = "evt_1") -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": etype, "data": {"object": obj}}


def test_paid_completion_and_async_success_build_the_same_purchase_under_the_session_key() -> None:
    paid = session()
    a = classify(event("checkout.session.completed", paid, "evt_a"))
    b = classify(event("checkout.session.async_payment_succeeded", paid, "evt_b"))
    assert a.kind == b.kind == "purchase"
    pi = {"id": "pi_1", "latest_charge": {"id": "ch_1", "receipt_url": "https://pay.example/receipts/1"}}
    first, second = purchase_command(a.obj, pi), purchase_command(b.obj, pi)
    assert isinstance(first, c.RecordPurchase)
    assert first == second and first.fingerprint() == second.fingerprint()
    assert first.idempotency_key == purchase_key("cs_test_1") == "stripe:checkout:cs_test_1"
    assert (first.kind, first.pack_id, first.cents_paid, first.credits_ucr) == ("pack", "builder", 5000, None)
    assert (first.stripe_charge, first.receipt_url, first.stripe_customer) == (
        "ch_1", "https://pay.example/receipts/1", "cus_1")
    assert first.stripe_event_id is None  # the event differs between deliveries of one payment


def test_a_custom_amount_carries_the_credits_the_session_promised() -> None:
    cmd = purchase_command(session(pack=None, paid=700, credits_ucr=7 * UCR))
    assert isinstance(cmd, c.RecordPurchase)
    assert (cmd.kind, cmd.pack_id, cmd.cents_paid, cmd.credits_ucr) == ("custom", None, 700, 7 * UCR)


def test_unpaid_completion_failed_and_foreign_sessions() -> None:
    assert classify(event("checkout.session.completed", session(status="unpaid"))).kind == "ignored"
    assert classify(event("checkout.session.async_payment_failed", session(status="unpaid"))).kind == "payment_failed"
    assert classify(event("checkout.session.completed", session(mode="subscription"))).kind == "ignored"
    foreign = session()
    foreign["metadata"] = {"account": "acct-1"}  # not opened by this ledger
    assert classify(event("checkout.session.completed", foreign)).kind == "ignored"
    assert classify(event("customer.created", {"id": "cus_1"})).kind == "ignored"
    assert classify({"id": "evt_x"}).kind == "ignored"


def test_an_underpaid_session_credits_nothing_and_says_why() -> None:
    found = purchase_command(session(paid=4000))
    assert isinstance(found, Notice)
    assert (found.account_id, found.reason) == ("acct-1", "amount_mismatch")
    assert "40.00" in found.message and "50.00" in found.message


def test_refunds_take_back_the_paid_share_of_credits_and_bonus_rounded_down() -> None:
    p = PurchaseFacts(uuid4(), 5000, 55 * UCR)  # builder: 50 + 5 bonus for $50
    assert credits_for_cents(p, 5000) == 55 * UCR
    assert credits_for_cents(p, 1000) == 11 * UCR
    assert credits_for_cents(PurchaseFacts(p.purchase_id, 3, 10 * UCR), 1) == 3_333_333  # down, not up
    assert cents_for_credits(p, 11 * UCR) == 1000
    assert cents_for_credits(p, 11 * UCR - 1) == 999  # the customer gets at most the value left
    refund = {"id": "re_1", "amount": 1000, "status": "succeeded", "metadata": {"reason": "asked nicely"}}
    cmd = refund_command("acct-1", p, refund)
    assert cmd is not None
    assert (cmd.direction, cmd.purchase_id, cmd.amount_ucr, cmd.force, cmd.reason, cmd.idempotency_key) == (
        "clawback", p.purchase_id, 11 * UCR, True, "asked nicely", "stripe:refund:re_1")
    assert refund_command("acct-1", p, {**refund, "status": "failed"}) is None
    assert refund_command("acct-1", p, {**refund, "amount": 0}) is None
    dashboard = refund_command("acct-1", p, {"id": "re_2", "amount": 10, "status": "succeeded", "metadata": {}})
    assert dashboard is not None and dashboard.reason == "refunded in Stripe (no reason given)"


def test_a_refund_the_ledger_made_takes_back_the_credits_it_named() -> None:
    p = PurchaseFacts(uuid4(), 5000, 55 * UCR)
    # 15 credits left: $13.63 back, and the 15 credits, not the 14.993 that $13.63 bought.
    made = {"id": "re_3", "amount": 1363, "status": "succeeded", "metadata": {"credits_ucr": str(15 * UCR)}}
    cmd = refund_command("acct-1", p, made)
    assert cmd is not None and cmd.amount_ucr == 15 * UCR
    assert credits_for_cents(p, 1363) == 14_993_000


def test_a_dispute_is_recorded_before_it_is_closed_under_its_own_keys() -> None:
    p = PurchaseFacts(uuid4(), 1000, 10 * UCR)
    opened = dispute_commands("acct-1", p, {"id": "du_1", "status": "needs_response", "reason": "fraudulent"})
    assert [type(cmd).__name__ for cmd in opened] == ["RecordDispute"]
    assert opened[0].idempotency_key == "stripe:dispute:du_1:opened"
    for status, outcome in (("won", "won"), ("lost", "lost"), ("warning_closed", "won")):
        record, close = dispute_commands("acct-1", p, {"id": "du_1", "status": status, "reason": "fraudulent"})
        assert record == opened[0]  # the same command as at creation: a replay if it landed
        assert isinstance(close, c.CloseDispute) and close.outcome == outcome
        assert close.idempotency_key == "stripe:dispute:du_1:closed"


def test_only_an_auto_refills_payment_intent_events_are_acted_on() -> None:
    refill = {"id": "pi_9", "metadata": {"source": SOURCE, "kind": "auto_refill", "account": "a", "crossing": "3"}}
    assert classify(event("payment_intent.succeeded", refill)).kind == "refill"
    assert classify(event("payment_intent.payment_failed", refill)).kind == "refill"
    assert classify(event("payment_intent.succeeded", {"id": "pi_8", "metadata": {}})).kind == "ignored"


def test_checkout_prices_packs_and_custom_amounts_from_the_card_before_stripe() -> None:
    builder = price(CARD, "builder", None)
    assert (builder.kind, builder.credits_ucr, builder.bonus_ucr, builder.price_cents) == ("pack", 50 * UCR,
                                                                                            5 * UCR, 5000)
    custom = price(CARD, None, 5 * UCR)  # 1 credit per dollar
    assert (custom.kind, custom.price_cents, custom.bonus_ucr) == ("custom", 500, 0)
    with pytest.raises(UnknownPack):
        price(CARD, "nope", None)
    with pytest.raises(PurchaseRejected, match="minimum") as below:
        price(CARD, None, UCR // 2)
    assert below.value.reason == "below_minimum" and below.value.status == 422
    with pytest.raises(PurchaseRejected, match="whole number of cents"):
        price(CARD, None, 5 * UCR + 5_000)
    with pytest.raises(InvalidRequest, match="exactly one"):
        price(CARD, "builder", 5 * UCR)
    with pytest.raises(InvalidRequest, match="exactly one"):
        price(CARD, None, None)


def test_the_session_carries_what_the_webhook_needs() -> None:
    params = session_params("acct-1", price(CARD, "builder", None), success_url="https://a.example/ok",
                            cancel_url="https://a.example/no", request_key="k-1", rate_card_version=CARD.version,
                            customer=None)
    meta = params["metadata"]
    assert params["mode"] == "payment" and params["customer_creation"] == "always"
    assert meta == params["payment_intent_data"]["metadata"]
    assert (meta["source"], meta["account"], meta["pack"], meta["credits_ucr"], meta["bonus_ucr"],
            meta["price_cents"], meta["key"]) == (SOURCE, "acct-1", "builder", str(50 * UCR), str(5 * UCR),
                                                  "5000", "k-1")
    assert params["line_items"][0]["price_data"]["unit_amount"] == 5000
