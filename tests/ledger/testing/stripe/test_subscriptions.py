"""Subscriptions from Checkout, their invoices, renewal, price changes, cancellation and the portal."""

from __future__ import annotations

import httpx
import pytest
import stripe

from ledger.testing.stripe import StripeError, StripeStandIn
from tests.ledger.testing.stripe.conftest import plan
from tests.ledger.testing.stripe.receiver import Receiver


def subscribe(s: StripeStandIn, client: stripe.StripeClient) -> tuple[stripe.checkout.Session, stripe.Subscription]:
    cs = client.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [plan(2000)], "customer_email": "owner@example.com",
        "success_url": "https://shop.test/ok", "metadata": {"account_id": "acct_1", "plan": "pro"},
        "subscription_data": {"metadata": {"account_id": "acct_1", "plan": "pro"}}})
    s.complete_checkout(cs.id)
    done = client.v1.checkout.sessions.retrieve(cs.id)
    assert done.subscription is not None
    return done, client.v1.subscriptions.retrieve(str(done.subscription))


def test_a_subscription_checkout_starts_it_with_a_paid_first_invoice(standin: StripeStandIn,
                                                                     client: stripe.StripeClient,
                                                                     receiver: Receiver) -> None:
    cs, sub = subscribe(standin, client)
    assert cs.status == "complete" and cs.payment_status == "paid" and str(cs.customer).startswith("cus_")
    assert sub.id.startswith("sub_") and sub.status == "active" and sub.customer == cs.customer
    assert sub.metadata is not None and sub.metadata["plan"] == "pro"
    first = client.v1.invoices.retrieve(str(cs.invoice))
    assert first.id.startswith("in_") and first.status == "paid" and first.amount_paid == 2000
    assert first.billing_reason == "subscription_create"
    assert first.lines.data[0].period.end > first.lines.data[0].period.start
    assert httpx.get(str(first.invoice_pdf)).content.startswith(b"%PDF-")
    assert httpx.get(str(first.hosted_invoice_url)).status_code == 200
    types = [e["type"] for e in standin.events()]
    assert types.index("customer.subscription.created") < types.index("invoice.paid") < types.index(
        "checkout.session.completed")
    paid = standin.events("invoice.paid")[0]["data"]["object"]
    assert paid["subscription"] == sub.id and paid["billing_reason"] == "subscription_create"
    assert standin.flush() and "invoice.paid" in receiver.types()


def test_renewal_bills_the_next_period(standin: StripeStandIn, client: stripe.StripeClient) -> None:
    _, sub = subscribe(standin, client)
    first_item = sub["items"]["data"][0]
    standin.renew(sub.id)
    renewed = standin.events("invoice.paid")[-1]["data"]["object"]
    assert renewed["billing_reason"] == "subscription_cycle" and renewed["amount_paid"] == 2000
    assert renewed["lines"]["data"][0]["period"]["start"] == first_item["current_period_end"]
    invoices = client.v1.invoices.list(params={"subscription": sub.id})
    assert [i.billing_reason for i in invoices.data] == ["subscription_cycle", "subscription_create"]
    assert client.v1.invoices.list(params={"customer": str(sub.customer)}).data[0].id == renewed["id"]
    lines = client.v1.invoices.line_items.list(renewed["id"])
    assert [line.amount for line in lines.data] == [2000]


def test_a_renewal_the_card_declines_fails_the_invoice(standin: StripeStandIn, client: stripe.StripeClient) -> None:
    _, sub = subscribe(standin, client)
    standin.update_card(str(sub.customer), "pm_card_chargeDeclined")
    client.v1.subscriptions.update(sub.id, params={"default_payment_method": ""})
    standin.renew(sub.id)
    failed = standin.events("invoice.payment_failed")
    assert len(failed) == 1 and failed[0]["data"]["object"]["status"] == "open"
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    standin.update_card(str(sub.customer), "pm_card_visa")
    standin.renew(sub.id)
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_cancel_at_period_end_deletes_it_when_the_period_ends(standin: StripeStandIn,
                                                              client: stripe.StripeClient) -> None:
    _, sub = subscribe(standin, client)
    updated = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert updated.cancel_at_period_end and updated.status == "active"
    change = standin.events("customer.subscription.updated")[-1]
    assert change["data"]["previous_attributes"] == {"cancel_at_period_end": False}
    standin.end_period(sub.id)
    deleted = standin.events("customer.subscription.deleted")
    assert [e["data"]["object"]["id"] for e in deleted] == [sub.id]
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    assert len(standin.events("invoice.paid")) == 1  # nothing billed for a period that will not come
    with pytest.raises(StripeError):
        standin.renew(sub.id)


def test_a_price_change_and_an_immediate_cancel(standin: StripeStandIn, client: stripe.StripeClient) -> None:
    _, sub = subscribe(standin, client)
    bigger = client.v1.prices.create(params={"currency": "usd", "unit_amount": 5000, "recurring": {"interval": "month"},
                                             "product_data": {"name": "Team plan"}})
    item = sub["items"]["data"][0]["id"]
    moved = client.v1.subscriptions.update(sub.id, params={"items": [{"id": item, "price": bigger.id}],
                                                           "proration_behavior": "none",
                                                           "metadata": {"plan": "team", "account_id": ""}})
    assert moved["items"]["data"][0]["price"]["id"] == bigger.id
    assert moved.metadata is not None and moved.metadata.to_dict() == {"plan": "team"}  # "" unsets a key
    standin.renew(sub.id)
    assert standin.events("invoice.paid")[-1]["data"]["object"]["amount_paid"] == 5000
    canceled = client.v1.subscriptions.cancel(sub.id)
    assert canceled.status == "canceled"
    assert standin.events()[-1]["type"] == "customer.subscription.deleted"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.update(sub.id, params={"items": [{"id": item, "price": bigger.id}]})


def test_the_portal_updates_the_card(standin: StripeStandIn, client: stripe.StripeClient) -> None:
    _, sub = subscribe(standin, client)
    customer = str(sub.customer)
    portal = client.v1.billing_portal.sessions.create(params={"customer": customer,
                                                              "return_url": "https://shop.test/account"})
    assert portal.id.startswith("bps_") and portal.url == f"{standin.base_url}/_standin/portal/{portal.id}"
    assert "id=update-card" in httpx.get(portal.url).text
    before = client.v1.customers.retrieve(customer).invoice_settings
    saved = httpx.post(f"{portal.url}/card", data={"payment_method": "pm_card_mastercard"}, follow_redirects=True)
    assert saved.status_code == 200 and "Card updated" in saved.text and "4444" in saved.text
    after = client.v1.customers.retrieve(customer).invoice_settings
    assert before is not None and after is not None
    assert after.default_payment_method != before.default_payment_method
    assert [e["type"] for e in standin.events()][-2:] == ["payment_method.attached", "customer.updated"]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.billing_portal.sessions.create(params={"customer": "cus_nobody"})
