"""Held webhook delivery driven by tests: out of order, five at once, late, tampered, wrong secret."""

from __future__ import annotations

import time

import httpx
import stripe

from ledger.testing.stripe import StripeStandIn
from ledger.testing.stripe.signing import header
from tests.ledger.testing.stripe.conftest import SECRET, pack
from tests.ledger.testing.stripe.receiver import Receiver


def paid_and_refunded(s: StripeStandIn) -> tuple[str, str]:
    """A paid checkout then a refund of it: (completed event id, refunded event id)."""
    client = s.client()
    cs = client.v1.checkout.sessions.create(params={"mode": "payment", "line_items": [pack()]})
    done = s.complete_checkout(cs.id)
    s.refund(done["payment_intent"])
    return s.events("checkout.session.completed")[0]["id"], s.events("charge.refunded")[0]["id"]


def test_held_events_are_sent_only_when_delivered_in_any_order(held: StripeStandIn, receiver: Receiver) -> None:
    completed, refunded = paid_and_refunded(held)
    time.sleep(0.2)
    assert receiver.received == [] and held.deliveries == []
    assert held.event(completed)["pending_webhooks"] == 1
    held.deliver(refunded)
    held.deliver(completed)
    assert receiver.types() == ["charge.refunded", "checkout.session.completed"]
    assert [d.status for d in held.deliveries] == [200, 200]
    assert held.client().v1.events.retrieve(completed).pending_webhooks == 0


def test_five_concurrent_deliveries_arrive_at_once(held: StripeStandIn, receiver: Receiver) -> None:
    completed, _ = paid_and_refunded(held)
    receiver.delay = 0.3
    done = held.deliver(completed, times=5, concurrently=True)
    assert [d.status for d in done] == [200] * 5
    assert receiver.most_in_flight == 5  # all five were in the endpoint at the same time
    assert [r.event_id for r in receiver.verified()] == [completed] * 5


def test_a_delivery_signed_too_long_ago_is_rejected_by_the_sdk(held: StripeStandIn, receiver: Receiver) -> None:
    completed, _ = paid_and_refunded(held)
    [late] = held.deliver(completed, signed_at=int(time.time()) - 301)
    assert late.status == 400 and not late.ok
    assert receiver.received[0].error is not None and "tolerance" in receiver.received[0].error
    [fresh] = held.deliver(completed, signed_at=int(time.time()) - 200)
    assert fresh.status == 200


def test_a_tampered_body_or_another_secret_is_rejected(held: StripeStandIn, receiver: Receiver) -> None:
    completed, _ = paid_and_refunded(held)
    assert [d.status for d in held.deliver(completed, tamper=True)] == [400]
    assert [d.status for d in held.deliver(completed, secret="whsec_someone_else")] == [400]
    assert [d.tampered for d in held.deliveries] == [True, False]
    assert receiver.verified() == [] and len(receiver.received) == 2


def test_the_signature_is_stripes_scheme() -> None:
    payload = b'{"id": "evt_1"}'
    signed = header(payload, SECRET, 1_700_000_000)
    assert signed.startswith("t=1700000000,v1=") and len(signed.split("v1=")[1]) == 64
    stripe.WebhookSignature.verify_header(payload.decode(), signed, SECRET, tolerance=None)


def test_automatic_delivery_sends_every_event_in_order_and_records_it(standin: StripeStandIn,
                                                                      receiver: Receiver) -> None:
    paid_and_refunded(standin)
    assert standin.flush()
    sent = [e["id"] for e in standin.events()]
    assert [r.event_id for r in receiver.verified()] == sent
    assert [d.event_id for d in standin.deliveries] == sent and all(d.ok for d in standin.deliveries)


def test_an_unreachable_endpoint_is_recorded_without_a_status(receiver: Receiver) -> None:
    receiver.stop()
    with StripeStandIn(webhook_url=receiver.url, webhook_secret=SECRET) as s:
        s.client().v1.customers.create(params={"email": "a@example.com"})
        assert s.flush()
        [attempt] = s.deliveries
        assert attempt.status is None and attempt.error and not attempt.ok
        assert s.events()[0]["pending_webhooks"] == 1


def test_endpoints_can_be_named_once_the_receiver_is_up(receiver: Receiver) -> None:
    with StripeStandIn(webhook_secret=SECRET) as s:
        s.client().v1.customers.create(params={"email": "before@example.com"})
        assert s.flush() and s.deliveries == []
        assert s.deliver(s.events()[0]["id"]) == []  # nowhere to send it
        s.webhook_urls = [receiver.url]
        s.client().v1.customers.create(params={"email": "after@example.com"})
        assert s.flush() and receiver.types() == ["customer.created"]
        config = httpx.post(f"{s.base_url}/_standin/config", json={"webhook_urls": ["not a url"]})
        assert config.status_code == 400 and config.json()["error"]["param"] == "webhook_urls"
        assert s.webhook_urls == [receiver.url]


def test_an_endpoint_that_fails_gets_the_event_again_after_each_delay(receiver: Receiver) -> None:
    receiver.outage = [503, 500]
    with StripeStandIn(webhook_url=receiver.url, webhook_secret=SECRET, retry_delays=[0.05, 0.05, 0.05]) as s:
        s.client().v1.customers.create(params={"email": "a@example.com"})
        assert s.flush()
        assert [d.status for d in s.deliveries] == [503, 500, 200]
        assert receiver.types() == ["customer.created"] and s.events()[0]["pending_webhooks"] == 0


def test_retries_stop_after_the_last_delay(receiver: Receiver) -> None:
    receiver.outage = [503] * 3
    with StripeStandIn(webhook_url=receiver.url, webhook_secret=SECRET, retry_delays=[0.05]) as s:
        s.client().v1.customers.create(params={"email": "a@example.com"})
        assert s.flush()
        assert [d.status for d in s.deliveries] == [503, 503] and s.events()[0]["pending_webhooks"] == 1
        assert receiver.outage == [503]  # no third attempt
