"""Coupons over HTTP: a code is the card's code whatever its case, redeemed once per account."""

from __future__ import annotations

import httpx

from tests.ledger.api.conftest import OpenApiAccount, bearer

PROBLEM = "application/problem+json"


async def test_a_coupon_code_in_any_case_is_redeemed_once(client: httpx.AsyncClient,
                                                          api_account: OpenApiAccount) -> None:
    account = await api_account(prefix="coupon-case")
    path = f"/v1/accounts/{account.id}/coupons"
    before = (await client.get(f"/v1/accounts/{account.id}/balance", headers=bearer(account.admin))).json()

    r = await client.post(path, headers=bearer(account.admin), json={"code": "welcome10"})
    assert r.status_code == 201, r.text
    assert (r.json()["code"], r.json()["amount_ucr"]) == ("WELCOME10", 10_000_000)  # the card's spelling

    for again in ("WELCOME10", "Welcome10", "welcome10"):
        r = await client.post(path, headers=bearer(account.admin), json={"code": again})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith(PROBLEM)
        body = r.json()
        assert (body["reason"], body["code"]) == ("already_redeemed", "WELCOME10"), body

    after = (await client.get(f"/v1/accounts/{account.id}/balance", headers=bearer(account.admin))).json()
    assert after["version"] == before["version"] + 1  # one CouponApplied, nothing for the refusals
    assert after["balance_ucr"] - before["balance_ucr"] == 10_000_000
    r = await client.get(f"/v1/accounts/{account.id}/ledger", headers=bearer(account.admin), params={"limit": 1})
    [entry] = r.json()["data"]
    assert (entry["type"], entry["details"]["code"]) == ("CouponApplied", "WELCOME10")
