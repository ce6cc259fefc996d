"""A database outage over HTTP: a 503 problem with ``Retry-After``, never a 500 or a 200 full of
``rejected`` items; the client's retry with the same keys records each item once."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.api.app import create_app
from ledger.api.runtime import Runtime
from ledger.clock import ManualClock
from ledger.rates import RateCard
from ledger.settings import Settings
from tests.ledger.api.conftest import bearer
from tests.ledger.conftest import OpenAccount
from tests.pg_proxy import ledger_behind_proxy


async def test_usage_during_a_database_outage_is_a_503_and_the_retry_counts_once(
    engine: AsyncEngine, database_url: str, clock: ManualClock, rate_card: RateCard, open_account: OpenAccount,
    operator_key: str,
) -> None:
    account = await open_account(credits_ucr=10_000_000)
    body = {"events": [{"account_id": account, "operation": "email", "quantity": 10, "idempotency_key": f"h{i}"}
                       for i in range(3)]}
    async with ledger_behind_proxy(database_url, clock, rate_card) as (remote, proxy):
        # The key stays verified for the whole test: the outage reaches the usage route itself.
        rt = Runtime(ledger=remote, settings=Settings(key_env="test", key_cache_s=3600, rate_limits=False))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(rt)),
                                     base_url="http://ledger.test", headers=bearer(operator_key)) as http:
            assert (await http.get("/v1/me")).status_code == 200
            await proxy.cut()
            r = await http.post("/v1/usage", json=body)
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["type"].endswith("/unavailable")
            await proxy.start()
            r = await http.post("/v1/usage", json=body)
            assert r.status_code == 200, r.text
            assert [x["status"] for x in r.json()["results"]] == ["created"] * 3
            r = await http.post("/v1/usage", json=body)
            assert [x["status"] for x in r.json()["results"]] == ["replayed"] * 3
    async with engine.connect() as conn:
        n = (await conn.execute(text(
            "SELECT count(*) FROM events WHERE account_id = :a AND idempotency_key LIKE 'h%'"),
            {"a": account})).scalar()
    assert n == 3
