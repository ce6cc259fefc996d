"""The SDK against a live server: uvicorn on a loopback port, an operator key, funded accounts."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.ledger.api.live import live_server, operator_key_for


@dataclass(frozen=True)
class Live:
    base_url: str
    operator_key: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.operator_key}"}


@pytest.fixture(scope="module")
def live(database_url: str, redis_url: str) -> Iterator[Live]:
    with live_server(database_url, redis_url) as base:
        yield Live(base, operator_key_for(database_url))


@dataclass(frozen=True)
class SdkAccount:
    id: str
    member_key: str
    read_key: str


NewAccount = Callable[..., SdkAccount]


@pytest.fixture
def new_account(live: Live) -> NewAccount:
    """An account on "team" holding exactly ``credits`` (signup and allowance burned), with keys."""

    def make(credits: str = "10") -> SdkAccount:
        account_id = f"sdk-{secrets.token_hex(5)}"
        h = live.headers()
        with httpx.Client(base_url=live.base_url, headers=h) as http:
            assert http.post("/v1/accounts", json={"id": account_id, "name": account_id, "plan": "team"}
                             ).status_code == 201
            signup = http.get(f"/v1/accounts/{account_id}/balance").json()["balance_ucr"]
            http.post("/v1/usage", json={"events": [{"account_id": account_id, "operation": "email",
                                                     "quantity": signup // 1000, "idempotency_key": "burn"}]})
            if credits != "0":
                assert http.post(f"/v1/accounts/{account_id}/grants", json={
                    "amount": credits, "source": "purchase", "reason": "sdk tests"}).status_code == 201
            keys = [http.post(f"/v1/accounts/{account_id}/api-keys", json={"role": role, "name": role}).json()["key"]
                    for role in ("member", "read")]
        return SdkAccount(account_id, *keys)

    return make
