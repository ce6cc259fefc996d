"""The SDK's async calls over its HTTPX client (as the project's gateway makes them) against the stand-in."""

from __future__ import annotations

import stripe

from ledger.testing.stripe import StripeStandIn
from tests.ledger.testing.stripe.conftest import pack


async def test_async_calls_with_automatic_idempotency_keys_and_retries(standin: StripeStandIn) -> None:
    client = stripe.StripeClient(standin.api_key, base_addresses={"api": standin.base_url}, max_network_retries=2,
                                 http_client=stripe.HTTPXClient(timeout=5))
    cs = await client.v1.checkout.sessions.create_async(params={"mode": "payment", "line_items": [pack(700)]},
                                                        options={"idempotency_key": "checkout:acct_1:1"})
    again = await client.v1.checkout.sessions.create_async(params={"mode": "payment", "line_items": [pack(700)]},
                                                           options={"idempotency_key": "checkout:acct_1:1"})
    assert again.id == cs.id
    standin.complete_checkout(cs.id)
    listed = await client.v1.checkout.sessions.list_async(params={"payment_intent": str(
        (await client.v1.checkout.sessions.retrieve_async(cs.id)).payment_intent)})
    assert [s.id for s in listed.data] == [cs.id]
    refunds = await client.v1.refunds.list_async(params={"payment_intent": str(listed.data[0].payment_intent)})
    assert refunds.data == []
