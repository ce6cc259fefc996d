"""Driving a paid checkout through the Stripe stand-in from an async test (its controls block, so
they run on a thread while the app answers the webhooks on the tests' loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from ledger.testing.stripe import Delivery, StripeStandIn
from tests.ledger.api.conftest import TestAccount, bearer

PAGES = {"success_url": "https://app.example.com/billing?paid=1", "cancel_url": "https://app.example.com/billing"}


async def checkout(client: httpx.AsyncClient, account: TestAccount, key: str | None = None,
                   **body: Any) -> dict[str, Any]:
    headers = bearer(account.admin) | ({"Idempotency-Key": key} if key else {})
    r = await client.post(f"/v1/accounts/{account.id}/checkout", json={**PAGES, **body}, headers=headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def pay(standin: StripeStandIn, session_id: str, **options: Any) -> dict[str, Any]:
    """The customer pays; every webhook it causes is delivered (when delivery is automatic)."""
    session: dict[str, Any] = await asyncio.to_thread(standin.complete_checkout, session_id, **options)
    await asyncio.to_thread(standin.flush)
    return session


async def deliver(standin: StripeStandIn, event_id: str, **options: Any) -> list[Delivery]:
    found: list[Delivery] = await asyncio.to_thread(standin.deliver, event_id, **options)
    return found


def event_of(standin: StripeStandIn, etype: str, object_id: str) -> dict[str, Any]:
    """The latest event of ``etype`` about the object ``object_id``."""
    found = [e for e in standin.events(etype) if e["data"]["object"]["id"] == object_id]
    assert found, f"no {etype} for {object_id}"
    return found[-1]


@contextmanager
def held(standin: StripeStandIn) -> Iterator[StripeStandIn]:
    """Hold every new event until the test delivers it itself."""
    standin.auto_deliver = False
    try:
        yield standin
    finally:
        standin.auto_deliver = True


async def balance(client: httpx.AsyncClient, account: TestAccount) -> dict[str, Any]:
    r = await client.get(f"/v1/accounts/{account.id}/balance", headers=bearer(account.read))
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def invoices(client: httpx.AsyncClient, account: TestAccount) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/accounts/{account.id}/invoices", headers=bearer(account.read))
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


def sessions_created(standin: StripeStandIn) -> int:
    with standin.store.lock:
        return sum(1 for o in standin.store.objects.values() if o.get("object") == "checkout.session")
