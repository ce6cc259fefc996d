"""A started stand-in and a verifying webhook receiver for each test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import stripe

from ledger.testing.stripe import StripeStandIn
from tests.ledger.testing.stripe.receiver import Receiver

SECRET = "whsec_standin_tests"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET).start()
    yield r
    r.stop()


@pytest.fixture
def standin(receiver: Receiver) -> Iterator[StripeStandIn]:
    with StripeStandIn(webhook_url=receiver.url, webhook_secret=SECRET) as s:
        yield s


@pytest.fixture
def held(receiver: Receiver) -> Iterator[StripeStandIn]:
    """A stand-in that sends nothing until ``deliver``."""
    with StripeStandIn(webhook_url=receiver.url, webhook_secret=SECRET, auto_deliver=False) as s:
        yield s


@pytest.fixture
def client(standin: StripeStandIn) -> stripe.StripeClient:
    return standin.client()


def pack(amount: int = 500, quantity: int = 1) -> Any:  # Any: the SDK's TypedDict for a line item
    """A one-time line item, as the project's checkout sends it."""
    return {"price_data": {"currency": "usd", "unit_amount": amount, "product_data": {"name": "1,000 credits"}},
            "quantity": quantity}


def plan(amount: int = 2000) -> Any:
    return {"price_data": {"currency": "usd", "unit_amount": amount, "product_data": {"name": "Pro plan"},
                           "recurring": {"interval": "month"}}, "quantity": 1}
