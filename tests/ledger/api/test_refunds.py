"""Refunds and disputes of purchases paid through Stripe: an operator's refund through the API, a
refund made in Stripe's dashboard (even delivered before its purchase's event), and a dispute."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx

from ledger.clock import ManualClock
from ledger.testing.stripe import StripeStandIn
from tests.ledger.api.conftest import OpenApiAccount, bearer
from tests.ledger.api.conftest import TestAccount as Account
from tests.ledger.api.stripe_helpers import balance, checkout, deliver, event_of, held, invoices, pay

UCR = 1_000_000


async def bought(client: httpx.AsyncClient, a: Account, standin: StripeStandIn, pack: str) -> dict[str, Any]:
    opened = await checkout(client, a, pack=pack)
    await pay(standin, opened["session_id"])
    [purchase] = [i for i in await invoices(client, a) if i["stripe_checkout_session"] == opened["session_id"]]
    return purchase


def stripe_refunds(standin: StripeStandIn, payment_intent: str) -> list[dict[str, Any]]:
    with standin.store.lock:
        return [o for o in standin.store.objects.values()
                if o.get("object") == "refund" and o.get("payment_intent") == payment_intent]


async def refund(client: httpx.AsyncClient, operator_key: str, a: Account, key: str | None = None,
                 **body: Any) -> httpx.Response:
    headers = bearer(operator_key) | ({"Idempotency-Key": key} if key else {})
    return await client.post(f"/v1/accounts/{a.id}/refunds", json=body, headers=headers)


async def test_a_refund_after_partial_use_takes_back_only_what_is_left(
        client: httpx.AsyncClient, api_account: OpenApiAccount, stripe_standin: StripeStandIn,
        operator_key: str) -> None:
    a = await api_account(prefix="ref-left")
    p = await bought(client, a, stripe_standin, "builder")  # 50 + 5 bonus for $50
    r = await client.post(f"/v1/accounts/{a.id}/charges", headers=bearer(a.member),
                          json={"operation": "email", "quantity": 40_000})  # 40 credits on the test card
    assert r.status_code == 201, r.text
    assert (await balance(client, a))["balance_ucr"] == 15 * UCR
    r = await refund(client, operator_key, a, key="ref-1", purchase_id=p["id"], reason="customer asked")
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["amount_ucr"], out["balance_after_ucr"], out["purchase_id"]) == (15 * UCR, 0, p["id"])
    # 15 of the 55 credits $50 bought: $13.63, rounded down.
    assert out["refunded_cents"] == 5000 * 15 // 55
    [made] = stripe_refunds(stripe_standin, p["stripe_payment_intent"])
    assert (made["id"], made["amount"]) == (out["stripe_refund"], 1363)
    # Stripe's charge.refunded for the same refund (delivered, and again) takes nothing more.
    await asyncio.to_thread(stripe_standin.flush)
    refunded = [e for e in stripe_standin.events("charge.refunded")
                if e["data"]["object"]["payment_intent"] == p["stripe_payment_intent"]]
    assert refunded
    [d] = await deliver(stripe_standin, refunded[-1]["id"])
    assert d.status == 200
    assert (await balance(client, a))["balance_ucr"] == 0
    # The API call retried: the same refund, replayed; Stripe is not asked again.
    again = await refund(client, operator_key, a, key="ref-1", purchase_id=p["id"], reason="customer asked")
    assert again.status_code == 201 and again.json()["id"] == out["id"], again.text
    assert again.headers.get("idempotent-replayed") == "true"
    assert len(stripe_refunds(stripe_standin, p["stripe_payment_intent"])) == 1
    # Nothing left: refused, and Stripe is not called.
    r = await refund(client, operator_key, a, purchase_id=p["id"], reason="again")
    assert r.status_code == 422 and r.json()["reason"] == "nothing_left", r.text
    assert len(stripe_refunds(stripe_standin, p["stripe_payment_intent"])) == 1


async def test_outside_the_refund_window_only_with_force(
        client: httpx.AsyncClient, api_account: OpenApiAccount, stripe_standin: StripeStandIn,
        operator_key: str, clock: ManualClock) -> None:
    a = await api_account(prefix="ref-win")
    p = await bought(client, a, stripe_standin, "starter")  # 10 credits for $10
    clock.advance(timedelta(days=31))
    r = await refund(client, operator_key, a, purchase_id=p["id"], amount="4", reason="late")
    assert r.status_code == 422 and r.json()["reason"] == "refund_window_closed", r.text
    assert stripe_refunds(stripe_standin, p["stripe_payment_intent"]) == []
    assert (await balance(client, a))["balance_ucr"] == 10 * UCR
    r = await refund(client, operator_key, a, purchase_id=p["id"], amount="4", reason="late", force=True)
    assert r.status_code == 201, r.text
    assert (r.json()["amount_ucr"], r.json()["forced"], r.json()["refunded_cents"]) == (4 * UCR, True, 400)
    assert (await balance(client, a))["balance_ucr"] == 6 * UCR
    # Only an operator refunds.
    r = await client.post(f"/v1/accounts/{a.id}/refunds", headers=bearer(a.admin),
                          json={"purchase_id": p["id"], "reason": "x"})
    assert r.status_code == 403, r.text


async def test_a_refund_delivered_before_its_purchase_resolves(
        client: httpx.AsyncClient, api_account: OpenApiAccount, stripe_standin: StripeStandIn) -> None:
    a = await api_account(prefix="ref-early")
    opened = await checkout(client, a, pack="builder")
    with held(stripe_standin):
        session = await pay(stripe_standin, opened["session_id"])
        pi = session["payment_intent"]
        await asyncio.to_thread(stripe_standin.refund, pi, amount=1000)  # $10 back from the dashboard
        refunded = [e for e in stripe_standin.events("charge.refunded") if e["data"]["object"]["payment_intent"] == pi]
        [d] = await deliver(stripe_standin, refunded[-1]["id"])
        assert d.status == 200
        # The purchase was recorded first (55 credits), then 11 of them taken back (10 of 50 dollars).
        assert (await balance(client, a))["balance_ucr"] == 44 * UCR
        completed = event_of(stripe_standin, "checkout.session.completed", opened["session_id"])
        sent = await deliver(stripe_standin, completed["id"], times=3, concurrently=True)
        assert [x.status for x in sent] == [200] * 3
        [again] = await deliver(stripe_standin, refunded[-1]["id"])
        assert again.status == 200
    assert (await balance(client, a))["balance_ucr"] == 44 * UCR
    assert len(await invoices(client, a)) == 1


async def test_a_dispute_freezes_what_is_left_until_it_is_won(
        client: httpx.AsyncClient, api_account: OpenApiAccount, stripe_standin: StripeStandIn) -> None:
    a = await api_account(prefix="dispute")
    p = await bought(client, a, stripe_standin, "starter")
    dispute = await asyncio.to_thread(stripe_standin.dispute, p["stripe_payment_intent"])
    await asyncio.to_thread(stripe_standin.flush)
    assert (await balance(client, a))["balance_ucr"] == 0
    r = await client.get(f"/v1/accounts/{a.id}/notifications", headers=bearer(a.read))
    assert [n["kind"] for n in r.json()["data"]] == ["purchase_disputed"], r.text
    created = event_of(stripe_standin, "charge.dispute.created", dispute["id"])
    assert [d.status for d in await deliver(stripe_standin, created["id"], times=2)] == [200, 200]
    await asyncio.to_thread(stripe_standin.close_dispute, dispute["id"], won=True)
    await asyncio.to_thread(stripe_standin.flush)
    assert (await balance(client, a))["balance_ucr"] == 10 * UCR
    closed = event_of(stripe_standin, "charge.dispute.closed", dispute["id"])
    assert [d.status for d in await deliver(stripe_standin, closed["id"])] == [200]
    assert (await balance(client, a))["balance_ucr"] == 10 * UCR
