"""Stripe's subscription and invoice events -> the plan's commands, without a network
(``ledger.billing.subscription_events``), on objects shaped as the stand-in builds them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ledger import commands as c
from ledger.billing.plans import checkout_params, plan_metadata
from ledger.billing.stripe_events import Action, classify
from ledger.billing.subscription_events import allowance_command, invoice_key, plan_action, subscription_command
from ledger.testing.stripe import billing_objects
from tests.cards import frozen_rate_card

CARD = frozen_rate_card()
START, END = 1_796_000_000, 1_798_600_000


def subscription(plan: str = "pro", status: str = "active", cancel: bool = False,
                 meta: dict[str, str] | None = None) -> dict[str, Any]:
    price = billing_objects.price(currency="usd", unit_amount=CARD.plan(plan).price_cents, product="prod_1",
                                  recurring={"interval": "month", "interval_count": 1})
    sub = billing_objects.subscription(customer="cus_1", items=[(price, 1)], start=START, end=END,
                                       default_payment_method="pm_1",
                                       metadata=plan_metadata("acct-1", plan, "k-1") if meta is None else meta)
    sub.update(status=status, cancel_at_period_end=cancel)
    return sub


def paid_invoice(sub: dict[str, Any]) -> dict[str, Any]:
    inv = billing_objects.invoice(sub, base_url="http://stripe.test", billing_reason="subscription_cycle",
                                  customer_email=None)
    inv["status"] = "paid"
    return inv


def event(etype: str, obj: dict[str, Any], event_id: str = "evt_1") -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": etype, "data": {"object": obj}}


def test_subscription_events_of_a_ledger_plan_name_the_subscription_and_the_event() -> None:
    sub = subscription()
    for etype in ("customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted"):
        assert plan_action(event(etype, sub, "evt_9")) == ("subscription", {"subscription": sub["id"],
                                                                            "event": "evt_9"})
    session = {"id": "cs_1", "object": "checkout.session", "mode": "subscription", "subscription": sub["id"],
               "metadata": plan_metadata("acct-1", "pro", "k-1")}
    assert plan_action(event("checkout.session.completed", session)) == (
        "subscription", {"subscription": sub["id"], "event": "evt_1"})


def test_events_not_about_a_ledger_plan_are_left_to_the_caller() -> None:
    foreign = subscription(meta={"team": "x"})
    assert plan_action(event("customer.subscription.updated", foreign)) is None
    assert plan_action(event("invoice.paid", paid_invoice(foreign))) is None
    payment = {"id": "cs_2", "mode": "payment", "metadata": plan_metadata("acct-1", "pro", None)}
    assert plan_action(event("checkout.session.completed", payment)) is None
    assert plan_action(event("invoice.paid", {"id": "in_x", "status": "paid", "subscription": None})) is None
    assert plan_action(event("invoice.payment_failed", paid_invoice(subscription()))) is None


def test_a_subscription_records_its_plan_status_period_and_cancellation() -> None:
    cmd = subscription_command(subscription("team", cancel=True), "evt_1")
    assert isinstance(cmd, c.RecordSubscription)
    assert (cmd.account_id, cmd.plan, cmd.status, cmd.cancel_at_period_end) == ("acct-1", "team", "active", True)
    assert cmd.current_period_end == datetime.fromtimestamp(END, UTC)
    # Newer API versions keep the period on the items only.
    bare = subscription()
    del bare["current_period_end"]
    found = subscription_command(bare, "evt_1")
    assert found is not None and found.current_period_end == datetime.fromtimestamp(END, UTC)


def test_the_subscription_key_replays_a_redelivery_and_keys_a_later_change_anew() -> None:
    sub = subscription()
    first, again = subscription_command(sub, "evt_1"), subscription_command(sub, "evt_1")
    assert first is not None and again is not None and first.idempotency_key == again.idempotency_key
    assert first == again  # same key, same request: the ledger replays it
    # A redelivery that retrieves a state changed since is another command, not a key conflict.
    changed = subscription_command(subscription(cancel=True), "evt_1")
    assert changed is not None and changed.idempotency_key != first.idempotency_key
    # Back to an earlier state through a later event: a new command, not a replay of the first.
    back = subscription_command(sub, "evt_3")
    assert back is not None and back.idempotency_key != first.idempotency_key


def test_subscriptions_not_sold_here_or_in_an_unknown_status_record_nothing() -> None:
    assert subscription_command(subscription(meta={}), "evt_1") is None
    assert subscription_command(subscription(status="on_fire"), "evt_1") is None


def test_a_paid_invoice_grants_its_lines_period_of_the_plan_it_billed_once_per_invoice() -> None:
    inv = paid_invoice(subscription("team"))
    assert plan_action(event("invoice.paid", inv)) == ("plan_invoice", inv)
    cmd = allowance_command(inv)
    assert isinstance(cmd, c.GrantPlanAllowance)
    assert (cmd.account_id, cmd.plan, cmd.invoice_id, cmd.idempotency_key) == (
        "acct-1", "team", inv["id"], invoice_key(inv["id"]))
    assert (cmd.period_start, cmd.period_end) == (datetime.fromtimestamp(START, UTC), datetime.fromtimestamp(END, UTC))
    assert cmd.stripe_subscription == inv["parent"]["subscription_details"]["subscription"]
    assert allowance_command(inv) == cmd


def test_an_invoice_keeps_the_plan_it_was_finalized_with() -> None:
    sub = subscription("pro")
    inv = paid_invoice(sub)
    sub["metadata"]["plan"] = "team"  # moved since: the invoice's snapshot still says pro
    found = allowance_command(inv)
    assert found is not None and found.plan == "pro"


def test_an_older_api_versions_invoice_is_read_too() -> None:
    inv = paid_invoice(subscription())
    details = inv.pop("parent")["subscription_details"]
    inv.update(subscription=details["subscription"], subscription_details={"metadata": details["metadata"]})
    found = allowance_command(inv)
    assert found is not None and found.stripe_subscription == details["subscription"]


def test_an_unpaid_invoice_or_one_without_a_period_grants_nothing() -> None:
    inv = paid_invoice(subscription())
    assert allowance_command({**inv, "status": "open"}) is None
    inv["lines"]["data"][0]["period"] = {}
    assert allowance_command(inv) is None


def test_the_plan_checkout_carries_the_plan_for_the_session_and_the_subscription() -> None:
    params = checkout_params("acct-1", CARD.plan("pro"), "USD", success_url="https://a.example/ok",
                             cancel_url="https://a.example/no", request_key="k-1", customer=None)
    assert params["mode"] == "subscription"
    line = params["line_items"][0]["price_data"]
    assert (line["unit_amount"], line["recurring"], line["currency"]) == (2000, {"interval": "month"}, "usd")
    assert params["metadata"] == params["subscription_data"]["metadata"] == plan_metadata("acct-1", "pro", "k-1")
    assert params["metadata"]["key"] == "k-1" and "customer" not in params


def test_the_webhook_classifies_plan_events_and_leaves_the_others_as_they_were() -> None:
    sub = subscription()
    assert classify(event("customer.subscription.updated", sub, "evt_5")) == Action(
        "subscription", {"subscription": sub["id"], "event": "evt_5"})
    inv = paid_invoice(sub)
    assert classify(event("invoice.paid", inv)) == Action("plan_invoice", inv)
    assert classify(event("customer.subscription.updated", subscription(meta={}))).kind == "ignored"
    assert classify(event("invoice.paid", {"id": "in_x", "status": "paid"})).kind == "ignored"
