"""Off-session PaymentIntents by test card, refunds, idempotency and authentication, through the SDK."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import stripe

from ledger.testing.stripe import StripeStandIn


def customer_with(client: stripe.StripeClient, token: str) -> tuple[str, str]:
    customer = client.v1.customers.create(params={"email": "owner@example.com"})
    pm = client.v1.payment_methods.attach(token, params={"customer": customer.id})
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    return customer.id, pm.id


def refill(client: stripe.StripeClient, customer: str, pm: str, key: str | None = None,
           amount: int = 2500) -> stripe.PaymentIntent:
    options: stripe.RequestOptions = {"idempotency_key": key} if key else {}
    return client.v1.payment_intents.create(params={
        "amount": amount, "currency": "usd", "customer": customer, "payment_method": pm, "confirm": True,
        "off_session": True, "metadata": {"account_id": "acct_1", "refill": "1"}}, options=options)


def test_an_off_session_payment_with_a_good_card_succeeds(standin: StripeStandIn, client: stripe.StripeClient) -> None:
    customer, pm = customer_with(client, "pm_card_visa")
    pi = refill(client, customer, pm)
    assert pi.id.startswith("pi_") and pi.status == "succeeded" and pi.amount_received == 2500
    charge = client.v1.charges.retrieve(str(pi.latest_charge))
    assert charge.id.startswith("ch_") and charge.paid and charge.payment_method == pm
    assert httpx.get(charge.receipt_url or "").status_code == 200
    assert [e["type"] for e in standin.events()][-2:] == ["charge.succeeded", "payment_intent.succeeded"]


def test_a_declined_card_raises_card_error_and_leaves_the_intent_unpaid(standin: StripeStandIn,
                                                                         client: stripe.StripeClient) -> None:
    customer, pm = customer_with(client, "pm_card_chargeDeclined")
    with pytest.raises(stripe.CardError) as declined:
        refill(client, customer, pm)
    error = declined.value
    assert error.http_status == 402 and error.code == "card_declined"
    assert error.error is not None and error.error.decline_code == "generic_decline"
    assert error.error.payment_intent is not None
    pi = client.v1.payment_intents.retrieve(error.error.payment_intent.id)
    assert pi.status == "requires_payment_method" and pi.last_payment_error is not None
    assert pi.last_payment_error.code == "card_declined"
    failed = standin.events("payment_intent.payment_failed")
    assert [e["data"]["object"]["id"] for e in failed] == [pi.id]
    assert not standin.events("payment_intent.succeeded")


def test_a_card_that_needs_authentication_is_refused_off_session(client: stripe.StripeClient) -> None:
    customer, pm = customer_with(client, "pm_card_authenticationRequired")
    with pytest.raises(stripe.CardError) as refused:
        refill(client, customer, pm)
    assert refused.value.code == "authentication_required" and refused.value.http_status == 402
    assert refused.value.error is not None and refused.value.error.payment_intent is not None
    assert client.v1.payment_intents.retrieve(refused.value.error.payment_intent.id).status == "requires_action"


def test_the_same_idempotency_key_replays_and_other_params_conflict(standin: StripeStandIn,
                                                                   client: stripe.StripeClient) -> None:
    customer, pm = customer_with(client, "pm_card_visa")
    first = refill(client, customer, pm, key="refill:acct_1:7")
    again = refill(client, customer, pm, key="refill:acct_1:7")
    assert again.id == first.id
    assert again.last_response is not None and again.last_response.headers.get("Idempotent-Replayed") == "true"
    assert len(standin.events("payment_intent.succeeded")) == 1  # charged once
    with pytest.raises(stripe.IdempotencyError) as conflict:
        refill(client, customer, pm, key="refill:acct_1:7", amount=9900)
    assert conflict.value.http_status == 400
    other_key = stripe.StripeClient("sk_test_another_account", base_addresses={"api": standin.base_url},
                                    max_network_retries=0)
    assert refill(other_key, customer, pm, key="refill:acct_1:7").id != first.id  # keys are per API key


def test_five_concurrent_requests_with_one_key_charge_once(standin: StripeStandIn,
                                                            client: stripe.StripeClient) -> None:
    customer, pm = customer_with(client, "pm_card_visa")
    with ThreadPoolExecutor(5) as pool:
        ids = list(pool.map(lambda _: refill(client, customer, pm, key="refill:acct_1:9").id, range(5)))
    assert len(set(ids)) == 1 and len(standin.events("payment_intent.succeeded")) == 1


def test_a_replayed_decline_is_the_same_decline(standin: StripeStandIn, client: stripe.StripeClient) -> None:
    customer, pm = customer_with(client, "pm_card_chargeDeclined")
    ids = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as declined:
            refill(client, customer, pm, key="refill:acct_1:8")
        assert declined.value.error is not None and declined.value.error.payment_intent is not None
        ids.append(declined.value.error.payment_intent.id)
    assert ids[0] == ids[1] and len(standin.events("payment_intent.payment_failed")) == 1


def test_refunds_never_exceed_what_is_left_on_the_charge(standin: StripeStandIn, client: stripe.StripeClient) -> None:
    customer, pm = customer_with(client, "pm_card_visa")
    pi = refill(client, customer, pm, amount=1000)
    part = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 600, "reason": "requested_by_customer",
                                            "metadata": {"ledger_refund": "r1"}})
    assert part.id.startswith("re_") and part.amount == 600 and part.status == "succeeded"
    assert part.metadata is not None and part.metadata["ledger_refund"] == "r1"
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 401})
    assert too_much.value.http_status == 400 and too_much.value.param == "amount"
    assert "greater than unrefunded amount" in str(too_much.value.user_message)
    rest = standin.refund(pi.id)  # from the dashboard: whatever is left
    assert rest["amount"] == 400
    with pytest.raises(stripe.InvalidRequestError) as nothing_left:
        client.v1.refunds.create(params={"charge": str(pi.latest_charge)})
    assert nothing_left.value.code == "charge_already_refunded"
    charge = client.v1.charges.retrieve(str(pi.latest_charge))
    assert charge.amount_refunded == 1000 and charge.refunded
    assert [r.id for r in client.v1.refunds.list(params={"payment_intent": pi.id}).data] == [rest["id"], part.id]
    assert client.v1.refunds.retrieve(part.id).amount == 600
    assert [e["type"] for e in standin.events()][-2:] == ["refund.created", "charge.refunded"]


def test_a_dispute_opens_and_closes(standin: StripeStandIn, client: stripe.StripeClient) -> None:
    customer, pm = customer_with(client, "pm_card_visa")
    pi = refill(client, customer, pm)
    opened = standin.dispute(pi.id)
    assert opened["id"].startswith("du_") and opened["amount"] == 2500 and opened["status"] == "needs_response"
    closed = standin.close_dispute(opened["id"], won=False)
    assert closed["status"] == "lost"
    assert [e["type"] for e in standin.events()][-2:] == ["charge.dispute.created", "charge.dispute.closed"]
    assert client.v1.disputes.retrieve(opened["id"]).status == "lost"


def test_requests_without_a_test_key_are_refused(standin: StripeStandIn) -> None:
    for headers in ({}, {"Authorization": "Bearer sk_live_123456789"}, {"Authorization": "Basic eDp5"}):
        answer = httpx.get(f"{standin.base_url}/v1/customers/cus_x", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"]["type"] == "invalid_request_error"
    bad = stripe.StripeClient("sk_live_123456789", base_addresses={"api": standin.base_url}, max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError):
        bad.v1.customers.create()
    assert not standin.events()


def test_an_unknown_route_is_stripes_404(standin: StripeStandIn) -> None:
    answer = httpx.get(f"{standin.base_url}/v1/nothing_here", headers={"Authorization": f"Bearer {standin.api_key}"})
    assert answer.status_code == 404 and "Unrecognized request URL" in answer.json()["error"]["message"]
