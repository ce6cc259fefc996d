"""Usage, analytics and a run's cost over HTTP: refused queries are 422 problems, reads before the
projectors ran are empty (not errors) and say how far behind they are, an unknown run is a 404."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ledger.service import Ledger
from tests.ledger.api.conftest import OpenApiAccount, bearer
from tests.projections.folding import fold_all

PROBLEM = "application/problem+json"


async def get(client: httpx.AsyncClient, path: str, key: str, status: int = 200) -> Any:
    r = await client.get(path, headers=bearer(key))
    assert r.status_code == status, f"{path}: {r.status_code} {r.text}"
    if status >= 400:
        assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    return r.json()


@pytest.mark.parametrize("query", [
    "usage?bucket=year", "usage?by=model", "usage?bucket=",
    "usage?from=2026-10-02T00:00:00Z&to=2026-10-01T00:00:00Z",  # backwards
    "usage?from=2026-10-01T00:00:00Z&to=2026-10-01T00:30:00Z",  # not one whole hour
    "usage?bucket=hour&from=2026-09-01T00:00:00Z&to=2026-10-15T00:00:00Z",  # 44 days of hours
    "usage?bucket=day&from=2025-01-01T00:00:00Z&to=2026-10-15T00:00:00Z",  # 652 days of days
    "usage?from=yesterday", "analytics?days=10", "analytics?days=0", "analytics?days=seven",
    # The default span before a `to` in year 1 would fall before year 1 (schemathesis found a 500).
    "usage?to=0001-01-01T04:00:00Z", "flows/f1?to=0001-01-01T04:00:00Z",
])
async def test_a_bad_query_is_a_422_problem(client: httpx.AsyncClient, api_account: OpenApiAccount,
                                            query: str) -> None:
    acct = await api_account(prefix="an-bad")
    body = await get(client, f"/v1/accounts/{acct.id}/{query}", acct.read, 422)
    assert body["status"] == 422


async def test_reads_before_and_after_the_projectors_ran(client: httpx.AsyncClient, api_account: OpenApiAccount,
                                                         ledger: Ledger) -> None:
    acct = await api_account(credits="100", prefix="an-run")
    base = f"/v1/accounts/{acct.id}"
    run = {"flow": "welcome", "agent": "greeter", "execution": "exec-http"}
    r = await client.post("/v1/usage", headers=bearer(acct.member), json={"events": [
        {"account_id": acct.id, "operation": "gpt-4o", "quantities": {"input_tokens": 4_000, "output_tokens": 1_000},
         "attribution": {**run, "node": "draft"}, "idempotency_key": "an-1"},
        {"account_id": acct.id, "operation": "email", "quantity": 3, "attribution": {**run, "node": "send"},
         "idempotency_key": "an-2"}]})
    assert [x["status"] for x in r.json()["results"]] == ["created", "created"], r.text

    # Not projected yet: empty figures, and the lag says so.
    before = await get(client, f"{base}/usage?by=flow", acct.read)
    assert before["data"] == [] and before["lag_ms"] > 0
    early = await get(client, f"{base}/analytics?days=7", acct.read)
    assert early["window_total_ucr"] == 0 and early["top_requests"] == [] and early["lag_ms"] > 0
    await get(client, f"{base}/executions/exec-http", acct.read, 404)

    await fold_all(ledger.engine)
    # gpt-4o on the test card: 4,000 × 2.50 + 1,000 × 10 credits per 1M = 20,000 µcr; email 1,000 µcr each.
    usage = await get(client, f"{base}/usage?by=integration", acct.read)
    totals = {b["key"]: b["credits_ucr"] for b in usage["data"]}
    assert totals["ai"] == 20_000 and totals["email"] >= 3_000  # the signup burn is email too
    assert usage["lag_ms"] == 0 and usage["as_of_position"] > 0 and usage["by"] == "integration"
    flows = await get(client, f"{base}/usage?by=flow&bucket=month", acct.read)
    assert [(b["key"], b["credits_ucr"]) for b in flows["data"]] == [("welcome", 23_000)]

    x = await get(client, f"{base}/executions/exec-http", acct.read)
    assert (x["flowId"], x["executionId"], x["agent"]) == ("welcome", "exec-http", "greeter")
    assert x["credits"] == {"ai": "0.020000", "ai_ucr": 20_000, "email": "0.003000", "email_ucr": 3_000,
                            "total": "0.023000", "total_ucr": 23_000}
    assert [(n["name"], n["credits_ucr"]) for n in x["by_node"]] == [("draft", 20_000), ("send", 3_000)]
    assert [m["name"] for m in x["by_model"]] == ["gpt-4o"] and [t["name"] for t in x["by_tool"]] == ["email"]
    await get(client, f"{base}/executions/exec-unknown", acct.read, 404)
    f = await get(client, f"{base}/flows/welcome", acct.read)
    assert [(r["flowId"], r["executionId"], r["credits"]["total_ucr"]) for r in f["executions"]] == [
        ("welcome", "exec-http", 23_000)]
    assert f["credits"]["ai_ucr"] == 20_000 and f["total_ucr"] == 23_000 and f["lag_ms"] == 0
    await get(client, f"{base}/flows/welcome?from=2026-01-01T00:00:00Z&to=2027-06-01T00:00:00Z", acct.read, 422)

    a = await get(client, f"{base}/analytics?days=7", acct.read)
    assert a["by_model"][0]["model"] == "gpt-4o" and a["by_model"][0]["credits_ucr"] == 20_000
    assert ("gpt-4o", 20_000) in [(r["operation"], r["credits_ucr"]) for r in a["top_requests"]]
    assert len(a["series"]) == 7
    assert a["this_period_ucr"] == a["window_total_ucr"] == sum(p["credits_ucr"] for p in a["series"])
