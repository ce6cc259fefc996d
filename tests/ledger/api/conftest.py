"""Fixtures for the HTTP API: the app on the session database, an operator key, and accounts
with one key per role, all driven through ``httpx`` against the ASGI app in-process.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from redis.asyncio import Redis

from ledger.api.app import create_app
from ledger.api.ratelimit import RateLimiter
from ledger.api.runtime import Runtime
from ledger.billing.gateway import StripeGateway
from ledger.keys import create_operator_key
from ledger.service import Ledger
from ledger.settings import Settings
from ledger.testing.stripe import StripeStandIn
from tests.ledger.api.stripe_bridge import WebhookBridge


@dataclass(frozen=True)
class TestAccount:
    """An account opened over HTTP, with a key of every account role."""

    id: str
    admin: str
    member: str
    read: str

    def key(self, role: str) -> str:
        return {"admin": self.admin, "member": self.member, "read": self.read}[role]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="session")
def webhook_bridge() -> Iterator[WebhookBridge]:
    """Where the Stripe stand-in sends its webhooks: on to the test's in-process app."""
    bridge = WebhookBridge().start()
    try:
        yield bridge
    finally:
        bridge.stop()


@pytest.fixture(scope="session")
def stripe_standin(webhook_bridge: WebhookBridge) -> Iterator[StripeStandIn]:
    """One Stripe stand-in for the session, delivering signed webhooks to the test app."""
    with StripeStandIn(webhook_url=f"{webhook_bridge.url}/v1/stripe/webhook") as standin:
        yield standin


def standin_settings(standin: StripeStandIn) -> dict[str, Any]:
    """``Settings`` that point a live server at the stand-in."""
    return {"stripe_api_key": standin.api_key, "stripe_webhook_secret": standin.webhook_secret,
            "stripe_api_base": standin.base_url}


def standin_gateway(standin: StripeStandIn) -> StripeGateway:
    return StripeGateway(api_key=standin.api_key, webhook_secret=standin.webhook_secret, api_base=standin.base_url)


@pytest_asyncio.fixture(loop_scope="session")
async def runtime(ledger: Ledger, redis_url: str, stripe_standin: StripeStandIn) -> AsyncIterator[Runtime]:
    """The API's runtime on the test ledger (manual clock), the real Redis and the Stripe stand-in."""
    limiter = RateLimiter(redis_url, fail_open=False)
    redis = Redis.from_url(redis_url)
    try:
        yield Runtime(ledger=ledger, settings=Settings(key_env="test"), limiter=limiter, redis=redis,
                      stripe=standin_gateway(stripe_standin))
    finally:
        await limiter.close()
        await redis.aclose()


@pytest.fixture
def app(runtime: Runtime) -> FastAPI:
    return create_app(runtime)


@pytest_asyncio.fixture(loop_scope="session")
async def client(app: FastAPI, webhook_bridge: WebhookBridge,
                 stripe_standin: StripeStandIn) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ledger.test") as c:
        webhook_bridge.target = (c, asyncio.get_running_loop())
        try:
            yield c
        finally:
            await asyncio.to_thread(stripe_standin.flush)  # the test's webhooks reach its own app
            webhook_bridge.target = None


@pytest_asyncio.fixture(loop_scope="session")
async def operator_key(ledger: Ledger) -> str:
    key, _ = await create_operator_key(ledger.engine, "tests", env="test")
    return key.key


OpenApiAccount = Callable[..., Awaitable[TestAccount]]


@pytest.fixture
def api_account(client: httpx.AsyncClient, operator_key: str) -> OpenApiAccount:
    """Open an account over HTTP (``plan``, ``credits`` granted as a purchase) with admin/member/read keys."""

    async def _open(*, plan: str = "team", credits: str | None = None, prefix: str = "api") -> TestAccount:
        account_id = f"{prefix}-{secrets.token_hex(6)}"
        op = bearer(operator_key)
        r = await client.post("/v1/accounts", json={"id": account_id, "name": account_id, "plan": plan}, headers=op)
        assert r.status_code == 201, r.text
        balance = r.json()
        del balance
        # Burn the signup credits so the account holds exactly what the test grants.
        b = (await client.get(f"/v1/accounts/{account_id}/balance", headers=op)).json()
        if b["balance_ucr"]:
            r = await client.post("/v1/usage", headers=op, json={"events": [{
                "account_id": account_id, "operation": "email", "quantity": b["balance_ucr"] // 1000,
                "idempotency_key": "burn-signup"}]})
            assert r.json()["results"][0]["status"] == "created", r.text
        if credits is not None:
            r = await client.post(f"/v1/accounts/{account_id}/grants", headers=op,
                                  json={"amount": credits, "source": "purchase", "reason": "test"})
            assert r.status_code == 201, r.text
        keys = {}
        for role in ("admin", "member", "read"):
            r = await client.post(f"/v1/accounts/{account_id}/api-keys", headers=op, json={"role": role, "name": role})
            assert r.status_code == 201, r.text
            keys[role] = r.json()["key"]
        return TestAccount(account_id, **keys)

    return _open
