"""Plans through the SDK (sync and async) against a LIVE server and the Stripe stand-in: a paid
plan bought through Checkout, its allowance landed by the stand-in's signed webhooks, then
cancelled back to the free plan at the period's end."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from ledger.client import AsyncClient, Client, InvalidRequestError
from ledger.testing.stripe import StripeStandIn
from tests.ledger.api.conftest import standin_settings
from tests.ledger.api.live import live_server, operator_key_for
from tests.ledger.client.conftest import Live, NewAccount

UCR = 1_000_000
PAGES = {"success_url": "https://app.example.com/billing?plan=1", "cancel_url": "https://app.example.com/billing"}


@pytest.fixture(scope="module")
def stripe_live(sdk_database_url: str, redis_url: str) -> Iterator[tuple[Live, StripeStandIn]]:
    """A live server on the SDK's database with its own Stripe stand-in sending webhooks back to it."""
    with StripeStandIn() as standin, live_server(sdk_database_url, redis_url, **standin_settings(standin)) as base:
        standin.deliverer.urls.append(f"{base}/v1/stripe/webhook")
        yield Live(base, operator_key_for(sdk_database_url)), standin


def test_a_plan_bought_and_cancelled_with_the_sdk(stripe_live: tuple[Live, StripeStandIn],
                                                  new_account: NewAccount) -> None:
    live, standin = stripe_live
    acct = new_account("0", plan="free")
    with Client(live.base_url, acct.admin_key) as admin:
        with pytest.raises(InvalidRequestError):
            admin.billing.plan("platinum", **PAGES)
        opened = admin.billing.plan("pro", idempotency_key="sdk-plan-1", **PAGES)
        assert (opened.status, opened.current_plan) == ("checkout", "free") and opened.checkout_url
        assert admin.billing.plan("pro", idempotency_key="sdk-plan-1", **PAGES).session_id == opened.session_id
        assert opened.session_id is not None
        session = standin.complete_checkout(opened.session_id)
        assert standin.flush()
        assert admin.credits.balance().balance_ucr == 25 * UCR
        bye = admin.billing.plan("free")
        assert bye.status == "cancelling" and bye.effective_at is not None
        standin.end_period(str(session["subscription"]))
        assert standin.flush()
        assert admin.billing.plan("free").status == "unchanged"


async def test_a_plan_bought_with_the_async_sdk(stripe_live: tuple[Live, StripeStandIn],
                                               new_account: NewAccount) -> None:
    live, standin = stripe_live
    acct = await asyncio.to_thread(new_account, "0", plan="free")
    async with AsyncClient(live.base_url, acct.admin_key) as admin:
        opened = await admin.billing.plan("team", **PAGES)
        assert opened.status == "checkout" and opened.session_id is not None
        await asyncio.to_thread(standin.complete_checkout, opened.session_id)
        assert await asyncio.to_thread(standin.flush)
        assert (await admin.credits.balance()).balance_ucr == 150 * UCR
        assert (await admin.billing.plan("team")).status == "unchanged"
