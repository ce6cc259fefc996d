"""``PUT``/``GET /v1/accounts/{account}/auto-refill``: the rule as the ledger keeps it, priced by the
rate card, refused when it cannot work, and only for an admin."""

from __future__ import annotations

import httpx

from ledger import commands as c
from ledger.service import Ledger
from tests.ledger.api.conftest import OpenApiAccount, bearer


async def test_an_admin_arms_auto_refill_and_reads_it_back(
        client: httpx.AsyncClient, api_account: OpenApiAccount, ledger: Ledger) -> None:
    acct = await api_account()
    url = f"/v1/accounts/{acct.id}/auto-refill"
    r = await client.put(url, headers=bearer(acct.admin),
                         json={"enabled": True, "threshold": "5", "amount": 20, "daily_cap": "60"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["enabled"], body["threshold_ucr"], body["amount"], body["daily_cap_ucr"]) == (
        True, 5_000_000, "20.000000", 60_000_000)
    assert body["price_cents"] > 0 and body["payment_method_saved"] is False and body["last_request"] is None
    assert (body["failures"], body["breaker_after"], body["breaker_open"]) == (0, 3, False)
    # A card saved (as the setup checkout's webhook does): the read shows it.
    await ledger.execute(c.SavePaymentMethod(account_id=acct.id, stripe_customer="cus_1", payment_method="pm_1"))
    read = await client.get(url, headers=bearer(acct.read))
    assert read.status_code == 200 and read.json()["payment_method_saved"] is True
    assert {k: v for k, v in read.json().items() if k != "payment_method_saved"} == {
        k: v for k, v in body.items() if k != "payment_method_saved"}


async def test_what_cannot_work_is_refused_and_changes_nothing(
        client: httpx.AsyncClient, api_account: OpenApiAccount) -> None:
    acct = await api_account()
    url = f"/v1/accounts/{acct.id}/auto-refill"
    for bad in ({"enabled": True, "threshold": "5", "amount": 20.5},  # a float
                {"enabled": True, "threshold": "5"},  # no amount
                {"enabled": True, "threshold": "5", "amount": "20", "daily_cap": "10"},  # a cap below one refill
                {"enabled": True, "threshold": "5", "amount": "100000000"},  # past the custom-amount maximum
                {"enabled": "yes", "threshold": "5", "amount": "20"}):
        r = await client.put(url, headers=bearer(acct.admin), json=bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert (await client.get(url, headers=bearer(acct.admin))).json()["enabled"] is False
    member = await client.put(url, headers=bearer(acct.member), json={"enabled": True, "threshold": "5", "amount": 20})
    assert member.status_code == 403
