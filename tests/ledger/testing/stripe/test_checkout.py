"""Checkout Sessions through the stripe SDK, completed by the stand-in's controls, with the
signed webhooks a real endpoint (verifying with ``stripe.Webhook.construct_event``) receives."""

from __future__ import annotations

import httpx
import pytest
import stripe

from ledger.testing.stripe import StripeError, StripeStandIn
from tests.ledger.testing.stripe.conftest import pack, plan
from tests.ledger.testing.stripe.receiver import Receiver


def payment_session(client: stripe.StripeClient) -> stripe.checkout.Session:
    return client.v1.checkout.sessions.create(params={
        "mode": "payment", "line_items": [pack(500, 2)], "success_url": "https://shop.test/ok?cs={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.test/cancel", "client_reference_id": "acct_1",
        "metadata": {"account_id": "acct_1", "pack": "p1000"},
        "payment_intent_data": {"metadata": {"account_id": "acct_1"}}})


def test_a_paid_checkout_sends_signed_events_the_sdk_accepts(standin: StripeStandIn, client: stripe.StripeClient,
                                                             receiver: Receiver) -> None:
    cs = payment_session(client)
    assert cs.id.startswith("cs_test_") and cs.status == "open" and cs.payment_status == "unpaid"
    assert cs.amount_total == 1000 and cs.currency == "usd" and cs.metadata is not None
    assert cs.metadata["pack"] == "p1000"
    assert cs.url == f"{standin.base_url}/_standin/checkout/{cs.id}"

    standin.complete_checkout(cs.id)
    assert standin.flush()

    assert receiver.types() == ["payment_intent.created", "charge.succeeded", "payment_intent.succeeded",
                                "checkout.session.completed"]
    assert all(r.verified for r in receiver.received)
    completed = standin.events("checkout.session.completed")[0]
    session = completed["data"]["object"]
    assert session["payment_status"] == "paid" and session["client_reference_id"] == "acct_1"
    pi = client.v1.payment_intents.retrieve(session["payment_intent"], params={"expand": ["latest_charge"]})
    assert pi.status == "succeeded" and pi.amount_received == 1000 and pi.metadata["account_id"] == "acct_1"
    assert isinstance(pi.latest_charge, stripe.Charge)
    assert str(pi.latest_charge.receipt_url).startswith(standin.base_url)
    event = client.v1.events.retrieve(completed["id"])
    assert event.type == "checkout.session.completed" and event.pending_webhooks == 0
    assert event.livemode is False and event.api_version
    listed = client.v1.checkout.sessions.list(params={"payment_intent": pi.id})
    assert [s.id for s in listed.data] == [cs.id]
    items = client.v1.checkout.sessions.line_items.list(cs.id)
    assert [(i.quantity, i.amount_total) for i in items.data] == [(2, 1000)]


def test_an_async_payment_completes_unpaid_then_succeeds_or_fails(standin: StripeStandIn,
                                                                  client: stripe.StripeClient) -> None:
    good, bad = payment_session(client), payment_session(client)
    assert standin.complete_checkout(good.id, outcome="async")["payment_status"] == "unpaid"
    standin.complete_checkout(bad.id, outcome="async")
    standin.settle_async(good.id, succeeded=True)
    standin.settle_async(bad.id, succeeded=False)
    assert [e["data"]["object"]["id"] for e in standin.events("checkout.session.async_payment_succeeded")] == [good.id]
    assert [e["data"]["object"]["id"] for e in standin.events("checkout.session.async_payment_failed")] == [bad.id]
    assert client.v1.checkout.sessions.retrieve(good.id).payment_status == "paid"
    assert client.v1.checkout.sessions.retrieve(bad.id).payment_status == "unpaid"
    with pytest.raises(StripeError):  # nothing is processing any more
        standin.settle_async(good.id)


def test_an_underpayment_is_what_the_session_says_was_paid(standin: StripeStandIn,
                                                            client: stripe.StripeClient) -> None:
    cs = payment_session(client)
    standin.complete_checkout(cs.id, amount=400)
    done = client.v1.checkout.sessions.retrieve(cs.id, params={"expand": ["payment_intent"]})
    assert done.amount_total == 400
    assert isinstance(done.payment_intent, stripe.PaymentIntent) and done.payment_intent.amount_received == 400


def test_a_declined_card_at_checkout_fails_the_payment_and_leaves_the_session_open(
        standin: StripeStandIn, client: stripe.StripeClient) -> None:
    cs = payment_session(client)
    pi = standin.fail_payment(cs.id)
    assert pi["status"] == "requires_payment_method" and pi["last_payment_error"]["code"] == "card_declined"
    assert [e["type"] for e in standin.events()][-1] == "payment_intent.payment_failed"
    with pytest.raises(StripeError) as declined:
        standin.complete_checkout(cs.id, payment_method="pm_card_chargeDeclined")
    assert declined.value.status == 402
    assert client.v1.checkout.sessions.retrieve(cs.id).status == "open"
    standin.complete_checkout(cs.id)  # another card then works
    assert client.v1.checkout.sessions.retrieve(cs.id).payment_status == "paid"


def test_the_hosted_page_pays_and_redirects_to_the_success_url(standin: StripeStandIn,
                                                                client: stripe.StripeClient) -> None:
    cs = payment_session(client)
    page = httpx.get(cs.url or "")
    assert page.status_code == 200 and 'id=pay>' in page.text and "10.00 USD" in page.text
    paid = httpx.post(f"{standin.base_url}/_standin/checkout/{cs.id}/pay", data={"action": "pay"})
    assert paid.status_code == 303 and paid.headers["location"] == f"https://shop.test/ok?cs={cs.id}"
    assert client.v1.checkout.sessions.retrieve(cs.id).payment_status == "paid"
    assert "complete" in httpx.get(cs.url or "").text


def test_expiring_a_session_closes_it_once(standin: StripeStandIn, client: stripe.StripeClient) -> None:
    cs = payment_session(client)
    assert client.v1.checkout.sessions.expire(cs.id).status == "expired"
    assert [e["data"]["object"]["id"] for e in standin.events("checkout.session.expired")] == [cs.id]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.expire(cs.id)
    with pytest.raises(StripeError):
        standin.complete_checkout(cs.id)


def test_setup_mode_saves_the_card_as_the_customers_default(standin: StripeStandIn,
                                                            client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"email": "owner@example.com"})
    cs = client.v1.checkout.sessions.create(params={"mode": "setup", "customer": customer.id, "currency": "usd",
                                                    "success_url": "https://shop.test/ok"})
    assert cs.setup_intent is not None and cs.setup_intent.startswith("seti_")  # type: ignore[union-attr]
    standin.complete_checkout(cs.id)
    seti = client.v1.setup_intents.retrieve(str(cs.setup_intent))
    assert seti.status == "succeeded" and seti.payment_method
    saved = client.v1.customers.retrieve(customer.id)
    assert saved.invoice_settings is not None
    assert saved.invoice_settings.default_payment_method == seti.payment_method
    methods = client.v1.payment_methods.list(params={"customer": customer.id, "type": "card"})
    assert [m.id for m in methods.data] == [seti.payment_method]
    assert {"setup_intent.succeeded", "payment_method.attached", "customer.updated",
            "checkout.session.completed"} <= {e["type"] for e in standin.events()}


def test_bad_sessions_are_refused_with_stripes_errors(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as no_items:
        client.v1.checkout.sessions.create(params={"mode": "payment", "success_url": "https://shop.test/ok"})
    assert no_items.value.http_status == 400 and no_items.value.param == "line_items"
    with pytest.raises(stripe.InvalidRequestError) as recurring:
        client.v1.checkout.sessions.create(params={"mode": "payment", "line_items": [plan()]})
    assert recurring.value.param == "line_items[0]"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.checkout.sessions.retrieve("cs_test_nope")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"


def test_a_payment_can_save_the_card_and_be_invoiced(standin: StripeStandIn, client: stripe.StripeClient) -> None:
    cs = client.v1.checkout.sessions.create(params={
        "mode": "payment", "line_items": [pack(1500)], "customer_email": "owner@example.com",
        "payment_intent_data": {"setup_future_usage": "off_session"},
        "invoice_creation": {"enabled": True, "invoice_data": {"metadata": {"account_id": "acct_1"}}}})
    standin.complete_checkout(cs.id)
    done = client.v1.checkout.sessions.retrieve(cs.id, params={"expand": ["invoice", "payment_intent"]})
    assert isinstance(done.invoice, stripe.Invoice) and isinstance(done.payment_intent, stripe.PaymentIntent)
    assert done.invoice.status == "paid" and done.invoice.amount_paid == 1500
    assert done.invoice.billing_reason == "manual"
    assert done.customer and done.invoice.customer == done.customer
    saved = client.v1.payment_methods.list(params={"customer": str(done.customer)})
    assert [m.id for m in saved.data] == [done.payment_intent.payment_method]
    assert {"payment_method.attached", "invoice.paid"} <= {e["type"] for e in standin.events()}


def test_a_declined_card_starts_no_subscription(standin: StripeStandIn, client: stripe.StripeClient) -> None:
    cs = client.v1.checkout.sessions.create(params={"mode": "subscription", "line_items": [plan()]})
    with pytest.raises(StripeError) as declined:
        standin.complete_checkout(cs.id, payment_method="pm_card_chargeDeclined")
    assert declined.value.status == 402 and declined.value.body["code"] == "card_declined"
    assert client.v1.checkout.sessions.retrieve(cs.id).status == "open"
    assert client.v1.subscriptions.list().data == [] and standin.events() == []


def test_the_hosted_page_pays_later_or_cancels(standin: StripeStandIn, client: stripe.StripeClient) -> None:
    later, kept = payment_session(client), payment_session(client)
    pay = f"{standin.base_url}/_standin/checkout/{later.id}/pay"
    assert httpx.post(pay, data={"action": "pay_async"}).status_code == 303
    assert client.v1.checkout.sessions.retrieve(later.id).payment_status == "unpaid"
    cancel = httpx.post(f"{standin.base_url}/_standin/checkout/{kept.id}/pay", data={"action": "cancel"})
    assert cancel.headers["location"] == "https://shop.test/cancel"
    assert client.v1.checkout.sessions.retrieve(kept.id).status == "open"
    declined = httpx.post(f"{standin.base_url}/_standin/checkout/{kept.id}/pay",
                          data={"action": "pay", "payment_method": "pm_card_chargeDeclined"})
    assert declined.status_code == 402 and "declined" in declined.text


def test_a_retry_after_a_decline_pays_the_same_intent_for_the_new_customer(standin: StripeStandIn,
                                                                          client: stripe.StripeClient) -> None:
    cs = client.v1.checkout.sessions.create(params={"mode": "payment", "line_items": [pack()],
                                                    "customer_creation": "always"})
    failed = standin.fail_payment(cs.id)
    done = standin.complete_checkout(cs.id)
    assert done["payment_intent"] == failed["id"] and done["customer"]
    pi = client.v1.payment_intents.retrieve(failed["id"])
    assert pi.status == "succeeded" and pi.customer == done["customer"]
