"""The main paths through the API, end to end over HTTP."""

from __future__ import annotations

import httpx

from tests.ledger.api.conftest import OpenApiAccount, bearer


async def test_open_charge_and_read(client: httpx.AsyncClient, api_account: OpenApiAccount) -> None:
    acct = await api_account(credits="10")
    h = bearer(acct.member)
    r = await client.post(f"/v1/accounts/{acct.id}/charges", headers=h,
                          json={"operation": "gpt-4o", "quantities": {"input_tokens": 1000, "output_tokens": 500}})
    assert r.status_code == 201, r.text
    charge = r.json()
    b = (await client.get(f"/v1/accounts/{acct.id}/balance", headers=h)).json()
    assert b["balance_ucr"] == 10_000_000 - charge["amount_ucr"]
    assert b["balance"] == f"{b['balance_ucr'] // 10**6}.{b['balance_ucr'] % 10**6:06d}"
    entries = (await client.get(f"/v1/accounts/{acct.id}/ledger", headers=h)).json()
    assert entries["data"][0]["id"] == charge["id"]
    assert entries["data"][0]["amount_ucr"] == -charge["amount_ucr"]
    ex = (await client.get(f"/v1/accounts/{acct.id}/entries/{charge['id']}/explain", headers=h)).json()
    assert ex["charged_ucr"] == charge["amount_ucr"]


def test_runout_forecast_is_exact_and_bounded() -> None:
    from datetime import UTC, datetime, timedelta

    from ledger.service import runout_at

    now = datetime(2026, 11, 1, tzinfo=UTC)
    assert runout_at(now, 7_000_000, 7_000_000) == now + timedelta(days=7)
    assert runout_at(now, 1_000_000, 7_000_000) == now + timedelta(days=1)
    assert runout_at(now, 0, 5) is None and runout_at(now, 5, 0) is None
    # A tiny burn against a big balance: "never" rather than an overflow (it was a 500).
    assert runout_at(now, 10**15, 42) is None
    assert runout_at(now, 2**62, 1) is None


async def test_balance_with_a_tiny_burn_rate_answers(client: httpx.AsyncClient, api_account: OpenApiAccount) -> None:
    acct = await api_account(credits="1000000000")
    h = bearer(acct.member)
    assert (await client.post(f"/v1/accounts/{acct.id}/charges", headers=h,
                              json={"operation": "email", "quantity": 1})).status_code == 201
    r = await client.get(f"/v1/accounts/{acct.id}/balance", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["runout_at"] is None
    assert [e["version"] for e in r.json()["recent"]] == list(range(r.json()["version"], 0, -1))[:20]
