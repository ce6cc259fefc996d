"""``PUT /v1/accounts/{account}/plan`` end to end: the API asks the Stripe stand-in, the customer
pays there, and the stand-in's real, signed webhooks move the account's plan and grant its
allowance once per paid invoice."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from ledger.testing.stripe import StripeStandIn
from tests.ledger.api.conftest import OpenApiAccount, TestAccount, bearer
from tests.ledger.api.stripe_helpers import PAGES, balance, deliver, event_of, held, pay, sessions_created

UCR = 1_000_000


async def put_plan(client: httpx.AsyncClient, account: TestAccount, plan: str, status: int, key: str | None = None,
                   **body: Any) -> dict[str, Any]:
    headers = bearer(account.admin) | ({"Idempotency-Key": key} if key else {})
    r = await client.put(f"/v1/accounts/{account.id}/plan", json={"plan": plan, **body}, headers=headers)
    assert r.status_code == status, r.text
    out: dict[str, Any] = r.json()
    return out


async def plan_of(client: httpx.AsyncClient, account: TestAccount) -> str:
    r = await client.get(f"/v1/accounts/{account.id}", headers=bearer(account.read))
    assert r.status_code == 200, r.text
    return str(r.json()["plan"])


async def test_buying_a_plan_through_checkout_grants_its_allowance_once(
        client: httpx.AsyncClient, api_account: OpenApiAccount, stripe_standin: StripeStandIn) -> None:
    a = await api_account(plan="free", prefix="plan")
    opened = await put_plan(client, a, "pro", 202, key="buy-pro", **PAGES)
    assert (opened["status"], opened["plan"], opened["current_plan"]) == ("checkout", "pro", "free")
    assert opened["checkout_url"].startswith("http") and opened["session_id"].startswith("cs_")
    again = await put_plan(client, a, "pro", 202, key="buy-pro", **PAGES)
    assert again["session_id"] == opened["session_id"]  # the same Idempotency-Key: the same session
    with held(stripe_standin):
        session = await pay(stripe_standin, opened["session_id"])
        paid = event_of(stripe_standin, "invoice.paid", str(session["invoice"]))
        sent = await deliver(stripe_standin, paid["id"], times=5, concurrently=True)
        assert [d.status for d in sent] == [200] * 5
        for etype in ("customer.subscription.created", "checkout.session.completed"):
            obj = session["subscription"] if etype.startswith("customer") else session["id"]
            assert [d.status for d in await deliver(stripe_standin, event_of(stripe_standin, etype, obj)["id"])] \
                == [200]
    b = await balance(client, a)
    assert b["balance_ucr"] == 25 * UCR and b["by_source"]["allowance_ucr"] == 25 * UCR, b
    assert await plan_of(client, a) == "pro"
    # Renewal: the allowance is reset, not added to.
    await asyncio.to_thread(stripe_standin.renew, str(session["subscription"]))
    await asyncio.to_thread(stripe_standin.flush)
    assert (await balance(client, a))["balance_ucr"] == 25 * UCR
    same = await put_plan(client, a, "pro", 200)
    assert (same["status"], same["stripe_subscription"]) == ("unchanged", session["subscription"])
    # Both paid plan invoices are listed, with what was paid and Stripe's PDF.
    r = await client.get(f"/v1/accounts/{a.id}/invoices", headers=bearer(a.read))
    listed = [i for i in r.json()["data"] if i["kind"] == "plan"]
    assert len(listed) == 2 and {i["pack"] for i in listed} == {"pro"}, r.text
    assert all(i["paid_cents"] > 0 and i["invoice_pdf"] and i["stripe_invoice"] for i in listed), listed
    assert listed[1]["stripe_invoice"] == session["invoice"]


async def test_the_free_plan_cancels_at_the_period_end(
        client: httpx.AsyncClient, api_account: OpenApiAccount, stripe_standin: StripeStandIn) -> None:
    a = await api_account(plan="free", prefix="plan-bye")
    opened = await put_plan(client, a, "pro", 202, **PAGES)
    session = await pay(stripe_standin, opened["session_id"])
    assert await plan_of(client, a) == "pro"
    bye = await put_plan(client, a, "free", 202, key="bye")
    assert (bye["status"], bye["current_plan"]) == ("cancelling", "pro") and bye["effective_at"]
    await asyncio.to_thread(stripe_standin.flush)
    assert await plan_of(client, a) == "pro"  # paid for until the period's end
    await asyncio.to_thread(stripe_standin.end_period, str(session["subscription"]))
    await asyncio.to_thread(stripe_standin.flush)
    assert await plan_of(client, a) == "free"


async def test_bad_plans_are_422_and_stripe_is_not_called(
        client: httpx.AsyncClient, api_account: OpenApiAccount, stripe_standin: StripeStandIn) -> None:
    a = await api_account(plan="free", prefix="plan-bad")
    before = sessions_created(stripe_standin)
    for body in ({"plan": "platinum", **PAGES}, {"plan": 5, **PAGES}, {"plan": "pro"},
                 {"plan": "pro", "success_url": "not a url", "cancel_url": PAGES["cancel_url"]},
                 {"plan": "pro", "extra": 1, **PAGES}):
        r = await client.put(f"/v1/accounts/{a.id}/plan", json=body, headers=bearer(a.admin))
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert sessions_created(stripe_standin) == before
    assert await plan_of(client, a) == "free"
    assert (await put_plan(client, a, "free", 200))["status"] == "unchanged"
