"""Buying credits and refunding them through a LIVE server and the Stripe stand-in: the SDK
(sync and async) opens the checkout, the stand-in's signed webhooks credit it, and refunds go
through the SDK and the ``credits refund`` command."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ledger.cli.app import app
from ledger.client import AsyncClient, Client, InvalidRequestError
from ledger.testing.stripe import StripeStandIn
from tests.ledger.api.conftest import standin_settings
from tests.ledger.api.live import live_server, operator_key_for
from tests.ledger.client.conftest import Live, NewAccount

UCR = 1_000_000
PAGES = {"success_url": "https://app.example.com/billing?paid=1", "cancel_url": "https://app.example.com/billing"}


@pytest.fixture(scope="module")
def stripe_live(sdk_database_url: str, redis_url: str) -> Iterator[tuple[Live, StripeStandIn]]:
    """A live server on the SDK's database that talks to its own Stripe stand-in, which sends its
    webhooks back to that server."""
    with StripeStandIn() as standin, live_server(sdk_database_url, redis_url, **standin_settings(standin)) as base:
        standin.deliverer.urls.append(f"{base}/v1/stripe/webhook")
        yield Live(base, operator_key_for(sdk_database_url)), standin


def test_buy_with_the_sdk_and_refund_with_the_sdk_and_the_cli(
        stripe_live: tuple[Live, StripeStandIn], new_account: NewAccount, sdk_database_url: str,
        tmp_path: Path) -> None:
    live, standin = stripe_live
    acct = new_account("0")
    with Client(live.base_url, acct.admin_key) as admin:
        session = admin.billing.checkout("builder", idempotency_key="sdk-buy-1", **PAGES)
        assert admin.billing.checkout("builder", idempotency_key="sdk-buy-1", **PAGES).session_id == \
            session.session_id
        with pytest.raises(InvalidRequestError):
            admin.billing.checkout("no-such-pack", **PAGES)
        standin.complete_checkout(session.session_id)
        assert standin.flush()
        assert admin.credits.balance().balance_ucr == 55 * UCR
        [bought] = admin.billing.invoices().data
        assert (bought.credits_ucr, bought.bonus_ucr, bought.paid_cents) == (50 * UCR, 5 * UCR, 5000)
        assert bought.receipt_url
        assert admin.billing.portal("https://app.example.com/billing").url.startswith("http")

    with Client(live.base_url, live.operator_key, account_id=acct.id) as operator:
        done = operator.billing.refund(bought.id, amount="11", reason="sdk", idempotency_key="sdk-refund-1")
        assert (done.amount_ucr, done.refunded_cents, done.balance_after_ucr) == (11 * UCR, 1000, 44 * UCR)
        again = operator.billing.refund(bought.id, amount="11", reason="sdk", idempotency_key="sdk-refund-1")
        assert again.id == done.id and again.replayed

    env = {"DATABASE_URL": sdk_database_url, "CREDITS_DATA_DIR": str(tmp_path / "unused"),
           "STRIPE_API_KEY": standin.api_key, "STRIPE_API_BASE": standin.base_url}
    result = CliRunner().invoke(app, ["refund", acct.id, str(bought.id), "--reason", "cli"], env=env)
    assert result.exit_code == 0, result.output
    assert "took back 44.000000 credits" in result.output
    assert standin.flush()
    with Client(live.base_url, acct.read_key) as reader:
        assert reader.credits.balance().balance_ucr == 0
    refused = CliRunner().invoke(app, ["refund", acct.id, str(bought.id), "--reason", "cli"], env=env)
    assert refused.exit_code == 1 and "nothing of purchase" in refused.output


async def test_buy_a_custom_amount_with_the_async_sdk(stripe_live: tuple[Live, StripeStandIn],
                                                      new_account: NewAccount) -> None:
    live, standin = stripe_live
    acct = await asyncio.to_thread(new_account, "0")
    async with AsyncClient(live.base_url, acct.admin_key) as admin:
        session = await admin.billing.checkout(credits_amount="3", **PAGES)
        assert (session.kind, session.credits_ucr, session.price_cents) == ("custom", 3 * UCR, 300)
        await asyncio.to_thread(standin.complete_checkout, session.session_id)
        assert await asyncio.to_thread(standin.flush)
        assert (await admin.credits.balance()).balance_ucr == 3 * UCR
        page = await admin.billing.invoices()
        assert [i.kind for i in page.data] == ["custom"]
