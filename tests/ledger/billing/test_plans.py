"""Plans through the Stripe stand-in, on PostgreSQL: an upgrade through Checkout, its allowance
once per paid invoice however often delivered, renewal without rollover, a change of plan,
cancellation back to the free plan at the period's end, and events out of order.

Events are held by the stand-in and handed to the plan's webhook work
(``plan_action`` -> ``act_on_plan``) in the order each test chooses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger import commands as c
from ledger import rows
from ledger.billing.gateway import StripeGateway
from ledger.billing.plan_webhooks import Done, act_on_plan
from ledger.billing.plans import PlanChange, change_plan
from ledger.billing.subscription_events import plan_action
from ledger.clock import ManualClock
from ledger.errors import InvalidRequest, PaymentProviderNotConfigured, UnknownPlan
from ledger.events import AllowanceGranted, Event, GrantExpired
from ledger.service import Ledger
from ledger.testing.stripe import StripeStandIn
from tests.ledger.conftest import OpenAccount

C = 1_000_000
OK, NO = "https://app.example/paid", "https://app.example/billing"


@pytest.fixture
def standin() -> Iterator[StripeStandIn]:
    with StripeStandIn(auto_deliver=False) as s:  # events are handed over by each test
        yield s


@pytest.fixture
def gateway(standin: StripeStandIn) -> StripeGateway:
    return StripeGateway(api_key=standin.api_key, webhook_secret=standin.webhook_secret, api_base=standin.base_url)


class Events:
    """The stand-in's events not yet handed over, and handing them to the webhook's plan work."""

    def __init__(self, standin: StripeStandIn, ledger: Ledger, gateway: StripeGateway) -> None:
        self.standin, self.ledger, self.gateway = standin, ledger, gateway
        self.seen = 0

    def new(self, *types: str) -> list[dict[str, Any]]:
        found = self.standin.events()
        fresh, self.seen = found[self.seen:], len(found)
        return [e for e in fresh if not types or e["type"] in types]

    async def deliver(self, event: dict[str, Any]) -> Done | None:
        found = plan_action(event)
        return None if found is None else await act_on_plan(self.ledger, self.gateway, *found)

    async def deliver_all(self, events: list[dict[str, Any]]) -> list[Done | None]:
        return [await self.deliver(e) for e in events]


@pytest.fixture
def events(standin: StripeStandIn, ledger: Ledger, gateway: StripeGateway) -> Events:
    return Events(standin, ledger, gateway)


async def account_events(ledger: Ledger, account_id: str) -> list[Event]:
    return list(reversed(await ledger.entries(account_id, limit=500)))  # oldest first


async def allowances(ledger: Ledger, account_id: str) -> list[AllowanceGranted]:
    return [e for e in await account_events(ledger, account_id) if isinstance(e, AllowanceGranted)]


async def subscribe(ledger: Ledger, gateway: StripeGateway, standin: StripeStandIn, events: Events,
                    account_id: str, plan: str = "pro") -> str:
    """Buy ``plan`` through Checkout and hand every event over: the subscription's id."""
    opened = await change_plan(ledger, gateway, account_id, plan, success_url=OK, cancel_url=NO,
                               request_key=f"buy-{plan}")
    assert opened.outcome == "checkout" and opened.session_id and opened.checkout_url
    session = standin.complete_checkout(opened.session_id)
    await events.deliver_all(events.new())
    return str(session["subscription"])


def events_of(found: list[dict[str, Any]], *types: str) -> list[dict[str, Any]]:
    return [e for e in found if e["type"] in types]


async def plan_of(ledger: Ledger, account_id: str) -> str:
    return (await ledger.account(account_id)).plan


async def test_an_upgrade_through_checkout_lands_the_allowance_once_however_often_delivered(
        ledger: Ledger, open_account: OpenAccount, standin: StripeStandIn, gateway: StripeGateway,
        events: Events) -> None:
    a = await open_account()
    opened = await change_plan(ledger, gateway, a, "pro", success_url=OK, cancel_url=NO, request_key="up-1")
    assert (opened.outcome, opened.current_plan) == ("checkout", "free")
    # A retried call (same Idempotency-Key): the same session, not a second one.
    again = await change_plan(ledger, gateway, a, "pro", success_url=OK, cancel_url=NO, request_key="up-1")
    assert again.session_id == opened.session_id
    assert opened.session_id is not None
    session = standin.client().v1.checkout.sessions.retrieve(opened.session_id)
    assert session.mode == "subscription" and session.to_dict()["metadata"]["plan"] == "pro"
    assert await plan_of(ledger, a) == "free"  # nothing changes until Stripe says it is paid

    completed = standin.complete_checkout(opened.session_id)
    fresh = events.new()
    paid = next(e for e in fresh if e["type"] == "invoice.paid")
    # invoice.paid first, five times at once; the subscription's events after.
    results = await asyncio.gather(*(events.deliver(paid) for _ in range(5)))
    assert sorted(r[0] for r in results if r) == ["recorded", "replayed", "replayed", "replayed", "replayed"]
    await events.deliver_all([e for e in fresh if e is not paid])
    await events.deliver(paid)
    granted = await allowances(ledger, a)
    invoice = paid["data"]["object"]["id"]
    assert [(g.amount_ucr, g.plan, g.stripe_invoice) for g in granted] == [(25 * C, "pro", invoice)]
    assert await plan_of(ledger, a) == "pro"
    assert (await ledger.balance(a)).balance_ucr == 25 * C
    sub = rows.subscription((await ledger.account(a)).settings)
    assert sub is not None and sub.live and sub.plan == "pro" and sub.stripe_subscription == completed["subscription"]


async def test_a_renewal_resets_the_allowance_without_rollover_and_leaves_purchases_alone(
        ledger: Ledger, open_account: OpenAccount, standin: StripeStandIn, gateway: StripeGateway,
        events: Events) -> None:
    a = await open_account(credits_ucr=10 * C)  # 10 purchased credits
    sub = await subscribe(ledger, gateway, standin, events, a)
    await ledger.execute(c.Meter(account_id=a, operation="email", quantity=3000))  # 3 credits spent
    before = (await ledger.balance(a)).balance_ucr
    assert before == 32 * C
    standin.renew(sub)
    await events.deliver_all(events.new())
    granted = await allowances(ledger, a)
    assert len(granted) == 2 and granted[1].amount_ucr == 25 * C
    expired = [e for e in await account_events(ledger, a) if isinstance(e, GrantExpired)]
    assert [e.grant_id for e in expired] == [granted[0].grant_id]  # the old allowance, not the purchase
    after = await ledger.balance(a)
    # The 3 credits came out of the allowance (it expires first); the purchase is whole.
    assert (after.by_source.get("allowance"), after.by_source.get("purchase")) == (25 * C, 10 * C)
    assert after.balance_ucr == 35 * C


async def test_a_change_of_plan_takes_effect_with_the_next_paid_invoice(
        ledger: Ledger, open_account: OpenAccount, standin: StripeStandIn, gateway: StripeGateway,
        events: Events) -> None:
    a = await open_account()
    sub = await subscribe(ledger, gateway, standin, events, a)
    moved = await change_plan(ledger, gateway, a, "team", success_url=None, cancel_url=None, request_key="to-team")
    assert (moved.outcome, moved.current_plan, moved.stripe_subscription) == ("scheduled", "pro", sub)
    assert moved.effective_at is not None
    updated = events.new("customer.subscription.updated")
    assert len(updated) == 1
    await events.deliver_all(updated)
    assert await plan_of(ledger, a) == "pro"  # paid for until the period's end
    retried = await change_plan(ledger, gateway, a, "team", success_url=None, cancel_url=None, request_key="to-team")
    assert retried.outcome == "unchanged"
    standin.renew(sub)
    await events.deliver_all(events.new())
    assert await plan_of(ledger, a) == "team"
    assert [(g.plan, g.amount_ucr) for g in await allowances(ledger, a)] == [("pro", 25 * C), ("team", 150 * C)]
    assert (await ledger.balance(a)).balance_ucr == 150 * C
    item = standin.client().v1.subscriptions.retrieve(sub)["items"]["data"][0]
    assert item["price"]["unit_amount"] == 10000


async def test_cancelling_goes_back_to_the_free_plan_at_the_period_end(
        ledger: Ledger, open_account: OpenAccount, standin: StripeStandIn, gateway: StripeGateway,
        events: Events) -> None:
    a = await open_account()
    sub = await subscribe(ledger, gateway, standin, events, a)
    done = await change_plan(ledger, gateway, a, "free", success_url=None, cancel_url=None, request_key="bye")
    assert done.outcome == "cancelling" and done.effective_at is not None
    cancelling = events.new()
    await events.deliver_all(cancelling)
    assert await plan_of(ledger, a) == "pro"
    known = rows.subscription((await ledger.account(a)).settings)
    assert known is not None and known.cancel_at_period_end
    standin.end_period(sub)
    ended = events.new()
    assert [e["type"] for e in ended] == ["customer.subscription.deleted"]
    await events.deliver_all(ended)
    assert await plan_of(ledger, a) == "free"
    # The cancellation's update delivered late, and the deletion again: still free, nothing new.
    assert [r[0] for r in await events.deliver_all(cancelling + ended) if r] == ["unchanged", "replayed"]
    assert await plan_of(ledger, a) == "free"
    # Free now, no live subscription: free again is nothing to do; Stripe is not asked.
    assert (await change_plan(ledger, gateway, a, "free", success_url=None, cancel_url=None,
                              request_key=None)).outcome == "unchanged"


async def test_cancelling_then_choosing_the_plan_again_resumes_it(
        ledger: Ledger, open_account: OpenAccount, standin: StripeStandIn, gateway: StripeGateway,
        events: Events) -> None:
    a = await open_account()
    sub = await subscribe(ledger, gateway, standin, events, a)
    await change_plan(ledger, gateway, a, "free", success_url=None, cancel_url=None, request_key="bye")
    cancel = events.new()
    back = await change_plan(ledger, gateway, a, "pro", success_url=None, cancel_url=None, request_key="stay")
    assert back.outcome == "resumed"
    resume = events.new()
    # Out of order: the resumption first, then the cancellation's older update.
    await events.deliver_all(resume + cancel)
    known = rows.subscription((await ledger.account(a)).settings)
    assert known is not None and not known.cancel_at_period_end  # Stripe's state now, not the late event's
    standin.end_period(sub)  # renews: not cancelled
    await events.deliver_all(events.new())
    assert await plan_of(ledger, a) == "pro" and len(await allowances(ledger, a)) == 2


async def test_events_out_of_order_do_not_leave_the_account_on_the_wrong_plan(
        ledger: Ledger, clock: ManualClock, open_account: OpenAccount, standin: StripeStandIn, gateway: StripeGateway,
        events: Events) -> None:
    a = await open_account()
    opened = await change_plan(ledger, gateway, a, "pro", success_url=OK, cancel_url=NO, request_key="ooo")
    assert opened.session_id is not None
    standin.complete_checkout(opened.session_id)
    start = events.new()
    sub = str(standin.client().v1.checkout.sessions.retrieve(opened.session_id).subscription)
    # The ledger learns of the subscription from the session's completion (it is paid for later).
    await events.deliver_all(events_of(start, "checkout.session.completed"))
    assert await plan_of(ledger, a) == "free"
    await change_plan(ledger, gateway, a, "team", success_url=None, cancel_url=None, request_key="ooo-team")
    moved = events.new()
    standin.renew(sub)
    renewal = events.new()
    second = events_of(renewal, "invoice.paid")[0]["data"]["object"]
    clock.set(datetime.fromtimestamp(second["lines"]["data"][0]["period"]["start"], UTC) + timedelta(minutes=1))
    # Everything in reverse: the renewal's invoice (team) before the first one (pro), the
    # subscription's creation (pro) after its move to team.
    done = await events.deliver_all(list(reversed(start + moved + renewal)))
    assert await plan_of(ledger, a) == "team"
    known = rows.subscription((await ledger.account(a)).settings)
    assert known is not None and known.plan == "team"
    # The first invoice came last, for a period that is over: refused (a notice), the plan kept.
    first = events_of(start, "invoice.paid")[0]["data"]["object"]["id"]
    assert [d[0] for d in done if d and first in d[1]] == ["notice"]
    assert [g.plan for g in await allowances(ledger, a)] == ["team"]
    # Then cancelled: the deletion before the update that set it to cancel.
    await change_plan(ledger, gateway, a, "free", success_url=None, cancel_url=None, request_key="ooo-bye")
    cancel = events.new()
    standin.end_period(sub)
    await events.deliver_all(events.new() + cancel)
    assert await plan_of(ledger, a) == "free"


async def test_an_unknown_plan_or_a_paid_one_without_urls_is_refused_before_stripe(
        ledger: Ledger, open_account: OpenAccount, standin: StripeStandIn, gateway: StripeGateway) -> None:
    a = await open_account()
    offline = StripeGateway(api_key=None, webhook_secret=None)  # asking it would be a 503
    with pytest.raises(UnknownPlan):
        await change_plan(ledger, offline, a, "platinum", success_url=OK, cancel_url=NO, request_key="x")
    with pytest.raises(InvalidRequest):
        await change_plan(ledger, gateway, a, "pro", success_url=None, cancel_url=None, request_key="x")
    assert list(standin.client().v1.checkout.sessions.list().data) == []
    assert await plan_of(ledger, a) == "free"


async def test_without_stripe_a_paid_plan_is_a_503_and_the_free_plan_still_works(
        ledger: Ledger, open_account: OpenAccount) -> None:
    offline = StripeGateway(api_key=None, webhook_secret=None)
    a = await open_account()
    with pytest.raises(PaymentProviderNotConfigured):
        await change_plan(ledger, offline, a, "pro", success_url=OK, cancel_url=NO, request_key="y")
    b = await open_account(plan="pro")  # put on pro by an operator, no subscription
    done: PlanChange = await change_plan(ledger, offline, b, "free", success_url=None, cancel_url=None,
                                         request_key="down")
    assert (done.outcome, done.current_plan) == ("changed", "free") and await plan_of(ledger, b) == "free"
    assert (await change_plan(ledger, offline, b, "free", success_url=None, cancel_url=None,
                              request_key=None)).outcome == "unchanged"


async def test_two_checkouts_paid_before_any_webhook_are_a_notice(
        ledger: Ledger, open_account: OpenAccount, standin: StripeStandIn, gateway: StripeGateway,
        events: Events) -> None:
    a = await open_account()
    first = await change_plan(ledger, gateway, a, "pro", success_url=OK, cancel_url=NO, request_key="tab-1")
    second = await change_plan(ledger, gateway, a, "pro", success_url=OK, cancel_url=NO, request_key="tab-2")
    assert first.session_id and second.session_id and first.session_id != second.session_id
    standin.complete_checkout(first.session_id)
    await events.deliver_all(events.new())
    standin.complete_checkout(second.session_id)
    batch = events.new()
    done = [d for d in await events.deliver_all(batch) if d]
    notices = [d for d in done if d[0] == "notice"]
    assert len(notices) == 1 and "two_subscriptions" in notices[0][1], done
    # Stripe delivers them again: nothing new, no second notice.
    again = [d for d in await events.deliver_all(batch) if d]
    assert {d[0] for d in again} <= {"replayed", "unchanged"}, again
