"""Buying credits through Stripe Checkout, end to end: the API opens a session on the Stripe
stand-in, the customer pays there, and the stand-in's real, signed webhooks credit the account
exactly once, however often and in whatever order they arrive."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping

import httpx
import pytest

from ledger.testing.stripe import StripeStandIn
from ledger.testing.stripe.signing import header
from tests.ledger.api.conftest import OpenApiAccount, bearer
from tests.ledger.api.conftest import TestAccount as ApiAccount
from tests.ledger.api.stripe_helpers import (
    PAGES,
    balance,
    checkout,
    deliver,
    event_of,
    held,
    invoices,
    pay,
    sessions_created,
)

UCR = 1_000_000


async def test_a_paid_checkout_lands_once_with_its_receipt(client: httpx.AsyncClient, api_account: OpenApiAccount,
                                                         stripe_standin: StripeStandIn) -> None:
    a = await api_account(prefix="buy")
    opened = await checkout(client, a, pack="builder")
    assert opened["session_id"].startswith("cs_") and opened["checkout_url"].startswith("http")
    assert (opened["credits_ucr"], opened["bonus_ucr"], opened["price_cents"]) == (50 * UCR, 5 * UCR, 5000)
    await pay(stripe_standin, opened["session_id"])
    assert (await balance(client, a))["balance_ucr"] == 55 * UCR
    # Stripe delivers again (its retries): nothing more.
    again = await deliver(stripe_standin, event_of(stripe_standin, "checkout.session.completed",
                                                   opened["session_id"])["id"], times=2)
    assert [d.status for d in again] == [200, 200]
    assert (await balance(client, a))["balance_ucr"] == 55 * UCR
    [bought] = await invoices(client, a)
    assert (bought["kind"], bought["pack"], bought["credits_ucr"], bought["bonus_ucr"], bought["paid_cents"]) == (
        "pack", "builder", 50 * UCR, 5 * UCR, 5000)
    assert bought["receipt_url"] and bought["stripe_checkout_session"] == opened["session_id"]


async def test_five_concurrent_deliveries_of_one_event_land_once(
        client: httpx.AsyncClient, api_account: OpenApiAccount, stripe_standin: StripeStandIn) -> None:
    a = await api_account(prefix="five")
    opened = await checkout(client, a, credits_amount="7")
    with held(stripe_standin):
        await pay(stripe_standin, opened["session_id"])
        completed = event_of(stripe_standin, "checkout.session.completed", opened["session_id"])
        sent = await deliver(stripe_standin, completed["id"], times=5, concurrently=True)
    assert [d.status for d in sent] == [200] * 5
    b = await balance(client, a)
    assert b["balance_ucr"] == 7 * UCR
    assert len(await invoices(client, a)) == 1


async def test_async_payment_lands_when_it_succeeds_and_never_when_it_fails(
        client: httpx.AsyncClient, api_account: OpenApiAccount, stripe_standin: StripeStandIn) -> None:
    a = await api_account(prefix="async")
    ok, bad = await checkout(client, a, pack="starter"), await checkout(client, a, pack="starter")
    # Completed but unpaid (a bank debit on its way): nothing yet.
    await pay(stripe_standin, ok["session_id"], outcome="async")
    await pay(stripe_standin, bad["session_id"], outcome="async")
    assert (await balance(client, a))["balance_ucr"] == 0
    # The same payment named by two events (completed paid, async succeeded) lands once.
    await stripe_standin_settle(stripe_standin, ok["session_id"], succeeded=True)
    await stripe_standin_settle(stripe_standin, bad["session_id"], succeeded=False)
    assert (await balance(client, a))["balance_ucr"] == 10 * UCR
    failed = event_of(stripe_standin, "checkout.session.async_payment_failed", bad["session_id"])
    [d] = await deliver(stripe_standin, failed["id"])
    assert d.status == 200
    assert (await balance(client, a))["balance_ucr"] == 10 * UCR
    assert len(await invoices(client, a)) == 1
    # The failure is told to the account once, however often Stripe delivered it.
    assert await payment_problems(client, a) == [("payment_failed", bad["session_id"])]


async def payment_problems(client: httpx.AsyncClient, account: ApiAccount) -> list[tuple[str, str]]:
    r = await client.get(f"/v1/accounts/{account.id}/notifications", headers=bearer(account.read))
    assert r.status_code == 200, r.text
    return [(n["period"], n["subject"]) for n in r.json()["data"] if n["kind"] == "payment_problem"]


async def stripe_standin_settle(standin: StripeStandIn, session_id: str, *, succeeded: bool) -> None:
    await asyncio.to_thread(standin.settle_async, session_id, succeeded=succeeded)
    await asyncio.to_thread(standin.flush)


async def test_an_underpaid_pack_credits_nothing(client: httpx.AsyncClient, api_account: OpenApiAccount,
                                                 stripe_standin: StripeStandIn) -> None:
    a = await api_account(prefix="under")
    opened = await checkout(client, a, pack="builder")
    await pay(stripe_standin, opened["session_id"], amount=4000)
    completed = event_of(stripe_standin, "checkout.session.completed", opened["session_id"])
    r = await client.post("/v1/stripe/webhook", content=_body(completed),
                          headers=_signed(stripe_standin, completed))
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "notice" and "amount_mismatch" in r.json()["detail"]
    assert (await balance(client, a))["balance_ucr"] == 0
    assert await invoices(client, a) == []
    assert await payment_problems(client, a) == [("amount_mismatch", opened["session_id"])]


def _body(event: Mapping[str, object]) -> bytes:
    return json.dumps(event).encode()


def _signed(standin: StripeStandIn, event: Mapping[str, object], *, at: int | None = None) -> dict[str, str]:
    """Headers as Stripe sends them, signed over ``_body(event)`` at ``at`` (default now)."""
    signature = header(_body(event), standin.webhook_secret, at if at is not None else int(time.time()))
    return {"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": signature}


async def test_bad_signatures_are_400_and_record_nothing(client: httpx.AsyncClient, api_account: OpenApiAccount,
                                                        stripe_standin: StripeStandIn) -> None:
    a = await api_account(prefix="sig")
    opened = await checkout(client, a, pack="starter")
    with held(stripe_standin):
        await pay(stripe_standin, opened["session_id"])
        completed = event_of(stripe_standin, "checkout.session.completed", opened["session_id"])["id"]
        tampered = await deliver(stripe_standin, completed, tamper=True)
        wrong = await deliver(stripe_standin, completed, secret="whsec_not_the_one")
        stale = await deliver(stripe_standin, completed, signed_at=int(time.time()) - 301)
    assert [d.status for d in tampered + wrong + stale] == [400, 400, 400]
    event = stripe_standin.event(completed)
    r = await client.post("/v1/stripe/webhook", content=_body(event), headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json"), r.text
    assert r.json()["type"].endswith("/invalid-signature")
    r = await client.post("/v1/stripe/webhook", content=_body(event),
                          headers=_signed(stripe_standin, event, at=int(time.time()) - 301))
    assert r.status_code == 400, r.text
    assert (await balance(client, a))["balance_ucr"] == 0
    # Signed as Stripe signs it, the same event lands.
    [ok] = await deliver(stripe_standin, completed)
    assert ok.status == 200
    assert (await balance(client, a))["balance_ucr"] == 10 * UCR


async def test_unknown_event_types_are_answered_200_and_ignored(client: httpx.AsyncClient,
                                                               stripe_standin: StripeStandIn) -> None:
    event = {"id": "evt_unknown", "object": "event", "type": "customer.tax_id.created", "data": {"object": {}}}
    r = await client.post("/v1/stripe/webhook", content=_body(event),
                          headers=_signed(stripe_standin, event))
    assert r.status_code == 200 and r.json()["outcome"] == "ignored", r.text


@pytest.mark.parametrize("body", [
    {"pack": "no-such-pack"},
    {"credits_amount": "0.5"},  # below the $1 minimum (1 credit per dollar on the test card)
    {"credits_amount": 7.5},  # a JSON float
    {"credits_amount": "5.015"},  # not a whole number of cents
    {"pack": "builder", "credits_amount": "5"},
    {},
])
async def test_checkout_refuses_bad_requests_without_calling_stripe(
        client: httpx.AsyncClient, api_account: OpenApiAccount, stripe_standin: StripeStandIn,
        body: dict[str, object]) -> None:
    a = await api_account(prefix="bad-co")
    before = sessions_created(stripe_standin)
    r = await client.post(f"/v1/accounts/{a.id}/checkout", json={**PAGES, **body}, headers=bearer(a.admin))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert sessions_created(stripe_standin) == before


async def test_a_retried_checkout_returns_the_same_session(client: httpx.AsyncClient, api_account: OpenApiAccount,
                                                           stripe_standin: StripeStandIn) -> None:
    a = await api_account(prefix="retry")
    first = await checkout(client, a, key="buy-1", pack="scale")
    before = sessions_created(stripe_standin)
    again = await checkout(client, a, key="buy-1", pack="scale")
    assert again["session_id"] == first["session_id"] and again["checkout_url"] == first["checkout_url"]
    assert sessions_created(stripe_standin) == before
    other = await checkout(client, a, key="buy-2", pack="scale")
    assert other["session_id"] != first["session_id"]
    r = await client.post(f"/v1/accounts/{a.id}/checkout", json={**PAGES, "pack": "starter"},
                          headers=bearer(a.admin) | {"Idempotency-Key": "buy-1"})
    assert r.status_code == 409, r.text
    # Only an admin buys.
    r = await client.post(f"/v1/accounts/{a.id}/checkout", json={**PAGES, "pack": "starter"}, headers=bearer(a.member))
    assert r.status_code == 403, r.text


async def test_a_checkout_retried_with_a_unicode_key_returns_the_same_session(
        client: httpx.AsyncClient, api_account: OpenApiAccount, stripe_standin: StripeStandIn) -> None:
    """The caller's key rides in Stripe's Idempotency-Key header, which takes printable ASCII only."""
    a = await api_account(prefix="unikey")
    first = await checkout(client, a, pack="starter", idempotency_key="ключ ✓ \u0016")
    again = await checkout(client, a, pack="starter", idempotency_key="ключ ✓ \u0016")
    assert first["session_id"] == again["session_id"]
