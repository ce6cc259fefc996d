"""The operator's list of accounts (``GET /v1/accounts``): id order, keyset pages, exact balances.
Who may call it (operator keys only) is in test_tenancy.py's walk."""

from __future__ import annotations

import secrets

import httpx

from tests.ledger.api.conftest import OpenApiAccount, bearer


async def test_accounts_are_listed_in_id_order_a_page_at_a_time_with_their_balances(
        client: httpx.AsyncClient, api_account: OpenApiAccount, operator_key: str) -> None:
    prefix = f"list{secrets.token_hex(3)}"
    opened = sorted([(await api_account(credits=str(n), prefix=prefix)).id for n in (1, 2, 3)])
    op = bearer(operator_key)
    # Ids are "<prefix>-<hex>": the prefix itself sorts just before them.
    r = await client.get("/v1/accounts", params={"limit": 2, "cursor": prefix}, headers=op)
    assert r.status_code == 200, r.text
    first = r.json()
    assert [a["id"] for a in first["data"]] == opened[:2] and first["has_more"]
    assert first["next_cursor"] == opened[1]
    second = (await client.get("/v1/accounts", params={"limit": 2, "cursor": first["next_cursor"]},
                               headers=op)).json()
    assert second["data"][0]["id"] == opened[2]
    for row in first["data"] + second["data"][:1]:
        balance = (await client.get(f"/v1/accounts/{row['id']}/balance", headers=op)).json()
        for field in ("balance", "available", "reserved", "debt"):
            assert (row[field], row[f"{field}_ucr"]) == (balance[field], balance[f"{field}_ucr"]), field
        assert (row["plan"], row["status"]) == ("team", "active")
    last = (await client.get("/v1/accounts", params={"limit": 500, "cursor": opened[2]}, headers=op)).json()
    assert opened[2] not in [a["id"] for a in last["data"]]


async def test_a_bad_page_size_is_a_422_and_an_account_key_is_refused(
        client: httpx.AsyncClient, api_account: OpenApiAccount, operator_key: str) -> None:
    for limit in (0, 501):
        r = await client.get("/v1/accounts", params={"limit": limit}, headers=bearer(operator_key))
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    acct = await api_account()
    assert (await client.get("/v1/accounts", headers=bearer(acct.admin))).status_code == 403
