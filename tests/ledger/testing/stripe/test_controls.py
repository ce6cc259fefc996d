"""The HTTP controls refuse bad input with Stripe's error body (400/404) and change nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from ledger.testing.stripe import StripeStandIn
from tests.ledger.testing.stripe.conftest import pack


@pytest.mark.parametrize("body", [{"outcome": "maybe"}, {"amount": "12"}, {"amount": -1}, {"amount": True},
                                  {"payment_method": 5}, {"payment_method": "pm_nope"}, [1, 2]])
def test_a_bad_completion_is_refused_and_the_session_stays_open(standin: StripeStandIn, client: stripe.StripeClient,
                                                                body: Any) -> None:
    cs = client.v1.checkout.sessions.create(params={"mode": "payment", "line_items": [pack()]})
    before = len(standin.events())
    answer = httpx.post(f"{standin.base_url}/_standin/checkout/{cs.id}/complete", json=body)
    assert answer.status_code in (400, 404) and answer.json()["error"]["type"] == "invalid_request_error"
    assert client.v1.checkout.sessions.retrieve(cs.id).status == "open"
    assert len(standin.events()) == before


def test_bad_delivery_and_config_requests_are_refused(standin: StripeStandIn, client: stripe.StripeClient) -> None:
    client.v1.customers.create(params={"email": "a@example.com"})
    event_id = standin.events()[0]["id"]
    base = standin.base_url
    for body in ({"times": 0}, {"times": 51}, {"concurrently": "yes"}, {"signed_at": "now"}, {"secret": 1}):
        answer = httpx.post(f"{base}/_standin/events/{event_id}/deliver", json=body)
        assert answer.status_code == 400, body
    assert httpx.post(f"{base}/_standin/events/evt_nope/deliver", json={}).status_code == 404
    assert httpx.post(f"{base}/_standin/config", json={"auto_deliver": "off"}).status_code == 400
    assert httpx.post(f"{base}/_standin/flush", json={"timeout": -1}).status_code == 400
    assert httpx.post(f"{base}/_standin/refunds", content=b"{not json").status_code == 400
    assert standin.auto_deliver and standin.flush()
    assert len(standin.deliveries) == 1  # only the automatic one


def test_a_bad_page_size_is_stripes_400(client: stripe.StripeClient) -> None:
    for limit in (0, 101):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            client.v1.events.list(params={"limit": limit})
        assert refused.value.param == "limit"
