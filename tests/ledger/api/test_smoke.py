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
