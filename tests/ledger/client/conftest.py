"""The SDK against a LIVE server: uvicorn on a loopback socket, in a thread with its own event loop,
serving ``create_app()`` on a database of its own; an operator key; funded accounts with keys.

Accounts are opened over plain HTTP (not through the SDK under test).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio

from ledger.money import parse_credits
from tests.conftest import create_database, drop_database, with_database
from tests.ledger.api.live import live_server, operator_key_for


@dataclass(frozen=True)
class Live:
    """A running API: its base URL and an operator key."""

    base_url: str
    operator_key: str

    def http(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30,
                            headers={"Authorization": f"Bearer {key or self.operator_key}"})


@dataclass(frozen=True)
class LiveAccount:
    """An account holding exactly the credits granted, with a key of every account role."""

    id: str
    admin_key: str
    member_key: str
    read_key: str


NewAccount = Callable[..., LiveAccount]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def sdk_database_url(server_url: str, template_database: str) -> AsyncIterator[str]:
    """A fresh migrated database for the SDK's live server (dropped at the end of the session)."""
    name = await create_database(server_url, "credits_fresh", template=template_database)
    try:
        yield with_database(server_url, name)
    finally:
        await drop_database(server_url, name)


@pytest.fixture(scope="session")
def live(sdk_database_url: str, redis_url: str) -> Iterator[Live]:
    """``create_app()`` served by uvicorn on a loopback port until the session ends."""
    with live_server(sdk_database_url, redis_url) as base_url:
        yield Live(base_url, operator_key_for(sdk_database_url))


@pytest.fixture
def new_account(live: Live) -> NewAccount:
    """Open a "team" account holding exactly ``credits`` (its signup credits burned), with keys."""

    def make(credits: str = "10", *, plan: str = "team") -> LiveAccount:
        account_id = f"sdk-{secrets.token_hex(6)}"
        with live.http() as http:
            r = http.post("/v1/accounts", json={"id": account_id, "name": account_id, "plan": plan})
            assert r.status_code == 201, r.text
            signup = http.get(f"/v1/accounts/{account_id}/balance").json()["balance_ucr"]
            if signup:
                r = http.post("/v1/usage", json={"events": [{
                    "account_id": account_id, "operation": "email", "quantity": signup // 1000,
                    "idempotency_key": "burn-signup"}]})
                assert r.json()["results"][0]["status"] == "created", r.text
            if credits != "0":
                r = http.post(f"/v1/accounts/{account_id}/grants",
                              json={"amount": credits, "source": "purchase", "reason": "sdk tests"})
                assert r.status_code == 201, r.text
            keys = {}
            for role in ("admin", "member", "read"):
                r = http.post(f"/v1/accounts/{account_id}/api-keys", json={"role": role, "name": role})
                assert r.status_code == 201, r.text
                keys[role] = r.json()["key"]
            assert http.get(f"/v1/accounts/{account_id}/balance").json()["balance_ucr"] == parse_credits(credits)
        return LiveAccount(account_id, keys["admin"], keys["member"], keys["read"])

    return make
