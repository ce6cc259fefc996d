"""``credits.usage``, ``credits.analytics`` and ``credits.execution`` through a LIVE server, sync and async."""

from __future__ import annotations

import asyncio

import pytest

from ledger.client import AsyncClient, Client, InvalidRequestError, NotFoundError
from ledger.db import make_engine
from tests.ledger.client.conftest import Live, NewAccount
from tests.projections.folding import fold_all


def catch_up(database_url: str) -> None:
    async def main() -> None:
        engine = make_engine(database_url, pool_size=2)
        try:
            await fold_all(engine)
        finally:
            await engine.dispose()

    asyncio.run(main())


def test_usage_analytics_and_a_runs_cost(live: Live, new_account: NewAccount, sdk_database_url: str) -> None:
    acct = new_account("10")
    run = {"flow": "welcome", "agent": "greeter", "execution": "sdk-run"}
    with live.http(acct.member_key) as http:
        r = http.post("/v1/usage", json={"events": [
            {"account_id": acct.id, "operation": "gpt-4o", "attribution": run, "idempotency_key": "sdk-a1",
             "quantities": {"input_tokens": 4_000, "output_tokens": 1_000}},
            {"account_id": acct.id, "operation": "sms", "quantity": 2, "attribution": run,
             "idempotency_key": "sdk-a2"}]})
        assert [x["status"] for x in r.json()["results"]] == ["created", "created"], r.text
    catch_up(sdk_database_url)

    # gpt-4o on the test card: 4,000 × 2.50 + 1,000 × 10 credits per 1M = 20,000 µcr; an SMS 7,500 µcr.
    with Client(live.base_url, acct.read_key) as client:
        usage = client.credits.usage(by="integration", bucket="month")
        totals = {b.key: b.credits_ucr for b in usage.data}
        assert (totals["ai"], totals["sms"]) == (20_000, 15_000)
        assert usage.by == "integration" and usage.lag_ms == 0 and usage.start < usage.to
        a = client.credits.analytics(days=7)
        assert [m.model for m in a.by_model] == ["gpt-4o"] and len(a.series) == 7
        x = client.credits.execution("sdk-run")
        assert (x.flow, x.total_ucr, x.credits["ai_ucr"], x.credits["sms"]) == ("welcome", 35_000, 20_000, "0.015000")
        f = client.credits.flow("welcome")
        assert [(r.flowId, r.executionId, r.credits["total_ucr"]) for r in f.executions] == [
            ("welcome", "sdk-run", 35_000)]
        with pytest.raises(NotFoundError):
            client.credits.execution("no-such-run")
        with pytest.raises(InvalidRequestError):
            client.credits.analytics(days=10)

    async def from_async() -> None:
        async with AsyncClient(live.base_url, acct.read_key) as client:
            assert (await client.credits.execution("sdk-run")).credits["total_ucr"] == 35_000
            assert (await client.credits.analytics(days=14)).days == 14
            assert (await client.credits.usage(by="flow")).data[0].key == "welcome"
            assert (await client.credits.flow("welcome")).total_ucr == 35_000

    asyncio.run(from_async())
