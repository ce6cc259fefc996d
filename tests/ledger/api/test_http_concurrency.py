"""Concurrency and rate limits over HTTP.

- 60 concurrent gated charges of exactly 1 credit on an account holding 25: exactly 25 succeed,
  35 get a complete 402, the balance ends at 0 and is never negative on the way.
- A free-plan account (60 requests a minute): the 61st request in the minute is a 429 with
  ``Retry-After``, and a 429'd charge records nothing.
- Operator keys count per key (``CREDITS_OPERATOR_RATE_LIMIT_PER_MINUTE``), never against the
  plan of the account they act on.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx

from ledger.api.app import create_app
from ledger.api.runtime import Runtime
from ledger.keys import create_account_key, create_operator_key
from ledger.service import Ledger
from ledger.settings import Settings
from tests.ledger.api.conftest import OpenApiAccount, bearer

PROBLEM = "application/problem+json"
#: 1,000 emails at 0.001 credits each: exactly 1 credit (checked with the estimate route).
ONE_CREDIT = {"operation": "email", "quantity": 1000}
Json = dict[str, Any]


async def test_concurrent_charges_never_overspend(client: httpx.AsyncClient, api_account: OpenApiAccount,
                                                  operator_key: str) -> None:
    a = await api_account(plan="team", credits="25", prefix="conc")  # team: 3,000 requests a minute
    op = bearer(operator_key)
    base = f"/v1/accounts/{a.id}"
    est = await client.post(f"{base}/estimate", headers=bearer(a.member), json=ONE_CREDIT)
    assert est.status_code == 200, est.text
    assert est.json()["total_ucr"] == 1_000_000, est.json()
    start = (await client.get(f"{base}/balance", headers=op)).json()
    assert start["balance_ucr"] == start["available_ucr"] == 25_000_000, start

    run = secrets.token_hex(4)
    body = {**ONE_CREDIT, "attribution": {"run": run}}
    responses = await asyncio.gather(*[client.post(f"{base}/charges", headers=bearer(a.member), json=body)
                                       for _ in range(60)])

    by_status: dict[int, list[httpx.Response]] = {}
    for r in responses:
        by_status.setdefault(r.status_code, []).append(r)
    assert {s: len(rs) for s, rs in by_status.items()} == {201: 25, 402: 35}, \
        {s: [r.text for r in rs[:2]] for s, rs in by_status.items()}

    charged = [r.json() for r in by_status[201]]
    assert all(c["amount_ucr"] == 1_000_000 and c["debt_added_ucr"] == 0 for c in charged), charged
    # Each success saw a distinct balance: 24, 23, ..., 0 credits.
    assert sorted(c["balance_after_ucr"] for c in charged) == [i * 1_000_000 for i in range(25)]
    assert len({c["id"] for c in charged}) == 25

    for r in by_status[402]:
        assert r.headers["content-type"].startswith(PROBLEM), r.headers
        p = r.json()
        for field in ("required", "required_ucr", "remaining", "remaining_ucr", "reason", "upgrade_url"):
            assert field in p, (field, p)
        assert p["status"] == 402 and p["reason"] == "insufficient_balance", p
        assert p["required_ucr"] == 1_000_000 and p["required"] == "1.000000", p
        # A refusal happens only once the balance is spent.
        assert p["remaining_ucr"] == 0 and p["remaining"] == "0.000000", p
        assert p["upgrade_url"].startswith("http"), p

    end = (await client.get(f"{base}/balance", headers=op)).json()
    assert end["balance_ucr"] == end["available_ucr"] == 0 and end["debt_ucr"] == 0, end
    assert end["version"] == start["version"] + 25

    ledger = (await client.get(f"{base}/ledger?limit=500", headers=op)).json()["data"]
    ours = [e for e in ledger if e["attribution"].get("run") == run]
    assert len(ours) == 25 and all(e["type"] == "UsageMetered" for e in ours), ours
    assert all(e["amount_ucr"] == -1_000_000 for e in ours)
    assert all(e["balance_after_ucr"] >= 0 for e in ledger), "the balance went negative"
    assert sorted(e["id"] for e in ours) == sorted(c["id"] for c in charged)


async def test_over_the_plan_rate_is_a_429_that_records_nothing(client: httpx.AsyncClient, ledger: Ledger,
                                                                operator_key: str) -> None:
    # A free-plan account (60 requests a minute). It is opened over a route that names no account
    # and its key is made directly, so the account's budget is untouched when the test starts.
    account_id = f"rate-{secrets.token_hex(6)}"
    r = await client.post("/v1/accounts", headers=bearer(operator_key),
                          json={"id": account_id, "name": account_id, "plan": "free"})
    assert r.status_code == 201, r.text
    made, _ = await create_account_key(ledger, account_id, "member", "rate", env="test")
    assert made is not None
    h = bearer(made.key)
    base = f"/v1/accounts/{account_id}"
    start = await ledger.balance(account_id, recent=0)
    assert start.balance_ucr > 0

    allowed: list[httpx.Response] = []
    for i in range(60):
        if i % 2:
            allowed.append(await client.post(f"{base}/charges", headers=h, json={"operation": "email", "quantity": 1}))
        else:
            allowed.append(await client.get(f"{base}/balance", headers=h))
    assert [r.status_code for r in allowed] == [200, 201] * 30, [r.text for r in allowed if r.status_code >= 300]
    after_allowed = await ledger.balance(account_id, recent=0)
    assert after_allowed.version == start.version + 30

    over = await client.post(f"{base}/charges", headers=h, json={"operation": "email", "quantity": 1})
    assert over.status_code == 429, over.text
    assert over.headers["content-type"].startswith(PROBLEM), over.headers
    retry_after = over.headers.get("retry-after")
    assert retry_after is not None and retry_after.isdigit() and 1 <= int(retry_after) <= 60, over.headers
    p = over.json()
    assert p["status"] == 429 and p["type"].endswith("/rate-limited"), p

    # The refused charge recorded nothing (read from the ledger: every HTTP request now counts).
    after = await ledger.balance(account_id, recent=0)
    assert (after.version, after.balance_ucr) == (after_allowed.version, after_allowed.balance_ucr)
    # Reads are limited too.
    assert (await client.get(f"{base}/balance", headers=h)).status_code == 429
    assert (await ledger.balance(account_id, recent=0)).version == after.version


async def test_operator_requests_count_per_operator_key_not_against_the_accounts_plan(
        client: httpx.AsyncClient, ledger: Ledger, runtime: Runtime, operator_key: str) -> None:
    """The operator is the product's backend acting for every account: its requests on an account
    spend its own per-key budget, so a tenant at its plan's limit never throttles the backend (and
    the backend's traffic never uses up the tenant's plan)."""
    account_id = f"rate-op-{secrets.token_hex(6)}"
    op = bearer(operator_key)
    r = await client.post("/v1/accounts", headers=op, json={"id": account_id, "name": account_id, "plan": "free"})
    assert r.status_code == 201, r.text
    made, _ = await create_account_key(ledger, account_id, "read", "rate", env="test")
    assert made is not None
    balance = f"/v1/accounts/{account_id}/balance"

    # More than the free plan's 60 a minute, all on the account's path: none refused.
    statuses = [(await client.get(balance, headers=op)).status_code for _ in range(70)]
    assert statuses == [200] * 70
    # The tenant's own budget is whole: 60 allowed, then 429.
    statuses = [(await client.get(balance, headers=bearer(made.key))).status_code for _ in range(61)]
    assert statuses == [200] * 60 + [429]
    # The tenant at its limit does not throttle the backend on its account.
    assert (await client.get(balance, headers=op)).status_code == 200

    # The operator's budget is per key (CREDITS_OPERATOR_RATE_LIMIT_PER_MINUTE).
    tight = create_app(Runtime(ledger=ledger, settings=Settings(key_env="test", operator_rate_limit_per_minute=5),
                               limiter=runtime.limiter))
    first, _ = await create_operator_key(ledger.engine, "rate-a", env="test")
    second, _ = await create_operator_key(ledger.engine, "rate-b", env="test")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=tight), base_url="http://ledger.test") as c:
        statuses = [(await c.get(balance, headers=bearer(first.key))).status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        assert (await c.get(balance, headers=bearer(second.key))).status_code == 200, "another key, another budget"
