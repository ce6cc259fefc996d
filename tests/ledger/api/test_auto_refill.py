"""``PUT``/``GET /v1/accounts/{account}/auto-refill``: the rule as the ledger keeps it, priced by the
rate card, refused when it cannot work, and only for an admin."""

from __future__ import annotations

import asyncio

import httpx

from ledger import commands as c
from ledger import rows
from ledger.events import PaymentMethodSaved
from ledger.service import Ledger
from ledger.testing.stripe import StripeStandIn
from tests.ledger.api.conftest import OpenApiAccount, bearer
from tests.ledger.api.stripe_helpers import PAGES, deliver, event_of, held


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


async def test_a_card_saved_through_stripe_arms_refills_and_a_new_one_restarts_them(
        client: httpx.AsyncClient, api_account: OpenApiAccount, ledger: Ledger, stripe_standin: StripeStandIn) -> None:
    acct = await api_account()
    url = f"/v1/accounts/{acct.id}/auto-refill"
    r = await client.put(url, headers=bearer(acct.admin), json={"enabled": True, "threshold": "5", "amount": "20"})
    assert r.status_code == 200, r.text
    setup = await client.post(f"{url}/payment-method", headers=bearer(acct.admin) | {"Idempotency-Key": "card-1"},
                              json=PAGES)
    assert setup.status_code == 200, setup.text
    again = await client.post(f"{url}/payment-method", headers=bearer(acct.admin) | {"Idempotency-Key": "card-1"},
                              json=PAGES)
    assert again.json()["session_id"] == setup.json()["session_id"]  # a retried call: the same session
    assert (await client.get(url, headers=bearer(acct.read))).json()["payment_method_saved"] is False
    # The customer saves a card on Stripe's page; its webhook (five times) saves it once.
    with held(stripe_standin):
        await asyncio.to_thread(stripe_standin.complete_checkout, setup.json()["session_id"])
        completed = event_of(stripe_standin, "checkout.session.completed", setup.json()["session_id"])
        sent = await deliver(stripe_standin, completed["id"], times=5, concurrently=True)
    assert [d.status for d in sent] == [200] * 5
    saved = rows.auto_refill((await ledger.account(acct.id)).settings)
    assert saved.payment_method is not None and saved.stripe_customer is not None
    assert (await client.get(url, headers=bearer(acct.read))).json()["payment_method_saved"] is True
    saves = [e for e in await ledger.entries(acct.id, limit=50) if isinstance(e, PaymentMethodSaved)]
    assert len(saves) == 1
    # A new card from the billing portal: refills charge it from now on.
    await asyncio.to_thread(stripe_standin.update_card, saved.stripe_customer, "pm_card_mastercard")
    await asyncio.to_thread(stripe_standin.flush)
    changed = rows.auto_refill((await ledger.account(acct.id)).settings)
    assert changed.payment_method not in (None, saved.payment_method)
    assert changed.stripe_customer == saved.stripe_customer and changed.failures == 0


async def test_saving_a_card_for_an_unknown_account_calls_no_one(
        client: httpx.AsyncClient, operator_key: str, stripe_standin: StripeStandIn) -> None:
    before = len(stripe_standin.events("checkout.session.created")) + len(stripe_standin.events("customer.created"))
    r = await client.post("/v1/accounts/nobody-here/auto-refill/payment-method", headers=bearer(operator_key),
                          json=PAGES)
    assert r.status_code == 404, r.text
    after = len(stripe_standin.events("checkout.session.created")) + len(stripe_standin.events("customer.created"))
    assert after == before
