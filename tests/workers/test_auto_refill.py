"""Auto-refill end to end: the relay finds each crossing below the threshold in the log and the
``auto_refill`` actor charges it through the Stripe stand-in, once, however often its message runs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.events import AutoRefillRequested, CreditsGranted, CreditsPurchased, UsageMetered
from ledger.log import LogEntry, LogPosition
from ledger.payments import AutoRefill
from ledger.service import Ledger
from ledger.settings import Settings
from ledger.testing.stripe import StripeStandIn
from tests.workers.conftest import drain
from tests.workers.test_relay import relay_until_caught_up
from workers import commands as payloads
from workers.relay import plan
from workers.runner import Background

C = 1_000_000
EMAIL = 1_000  #: what an email costs on the test card, in µcr


@pytest.fixture
def standin() -> Iterator[StripeStandIn]:
    with StripeStandIn() as s:
        yield s


@pytest.fixture
def settings(settings: Settings, standin: StripeStandIn) -> Settings:
    return settings.model_copy(update={"stripe_api_key": standin.api_key, "stripe_api_base": standin.base_url})


async def test_the_relay_finds_each_crossing_and_the_actor_charges_it_once(
        background: Background, wledger: Ledger, standin: StripeStandIn) -> None:
    client = standin.client()
    customer = client.v1.customers.create(params={"email": "gpu@example.com"})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    a = "refilled"
    await wledger.execute(c.OpenAccount(account_id=a, name=a, plan="free"))  # 5 signup credits
    await wledger.execute(c.ConfigureAutoRefill(account_id=a, enabled=True, threshold_ucr=4 * C, amount_ucr=20 * C))
    await wledger.execute(c.SavePaymentMethod(account_id=a, stripe_customer=customer.id, payment_method=pm.id))
    await wledger.execute(c.Meter(account_id=a, operation="email", quantity=2 * C // EMAIL))  # 5 -> 3: a crossing

    background.start_worker(threads=2)
    await relay_until_caught_up(background, wledger)
    await asyncio.to_thread(drain, background)
    # The message again (a redelivery, a second relay): nothing more is charged.
    crossing = next(e for e in await wledger.entries(a, limit=20) if isinstance(e, AutoRefillRequested)).crossing
    background.actors.auto_refill.send(a, crossing)
    background.actors.auto_refill.send(a, crossing)
    await asyncio.to_thread(drain, background)

    pis = client.v1.payment_intents.list(params={"customer": customer.id}).data
    assert [(p.status, p.amount) for p in pis] == [("succeeded", 2000)]
    purchases = [e for e in await wledger.entries(a, limit=50) if isinstance(e, CreditsPurchased)]
    assert [(p.kind, p.crossing) for p in purchases] == [("auto_refill", crossing)]
    assert (await wledger.balance(a)).balance_ucr == 23 * C
    # The refill's own events cross nothing: relaying them asks for no other refill.
    await relay_until_caught_up(background, wledger)
    await asyncio.to_thread(drain, background)
    assert len(client.v1.payment_intents.list(params={"customer": customer.id}).data) == 1


def test_plan_asks_one_refill_per_crossing_of_an_armed_account() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)

    def use(account: str, version: int, amount: int, after: int) -> LogEntry:
        e = UsageMetered(event_id=uuid4(), account_id=account, occurred_at=now, recorded_at=now, amount_ucr=amount,
                         balance_after_ucr=after, operation="email", quantities={}, cost_ucr=-amount,
                         exact_cost=str(-amount), rate_card_version="v", gated=False)
        return LogEntry(LogPosition(1, version), e, version)

    granted = CreditsGranted(event_id=uuid4(), account_id="a", occurred_at=now, recorded_at=now, amount_ucr=10 * C,
                             balance_after_ucr=12 * C, grant_id=uuid4(), source="purchase", reason="top up")
    entries = [use("a", 2, -2 * C, 3 * C),  # 5 -> 3: crosses 4
               use("a", 3, -1 * C, 2 * C),  # already below: no crossing
               LogEntry(LogPosition(1, 4), granted, 4),  # back above
               use("a", 5, -9 * C, 3 * C),  # crosses again
               use("b", 2, -2 * C, 3 * C)]  # not armed
    armed = AutoRefill(enabled=True, threshold_ucr=4 * C, amount_ucr=20 * C)
    assert plan(entries, {}, {"a": armed}).refills == [("a", 2), ("a", 5)]
    assert plan(entries, {}, {"a": armed}).runouts == set()
    # With a forecast trigger, spending asks for a forecast check (once per account and batch).
    forecasting = plan(entries, {}, {"a": replace(armed, runout_hours=24)})
    assert (forecasting.refills, forecasting.runouts) == ([("a", 2), ("a", 5)], {"a"})


async def test_the_hourly_charge_refills_before_it_pauses(
        background: Background, wledger: Ledger, standin: StripeStandIn, clock: ManualClock) -> None:
    client = standin.client()
    customer = client.v1.customers.create(params={"email": "h100@example.com"})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    a = "hourly"
    await wledger.execute(c.OpenAccount(account_id=a, name=a, plan="free"))  # 5 signup credits
    await wledger.execute(c.ConfigureAutoRefill(account_id=a, enabled=True, threshold_ucr=1 * C, amount_ucr=20 * C))
    await wledger.execute(c.SavePaymentMethod(account_id=a, stripe_customer=customer.id, payment_method=pm.id))
    await wledger.execute(c.StartDeployment(account_id=a, deployment_id="h100", instance_type="gpu-l"))  # 1.01 left
    clock.advance(timedelta(hours=1))
    hour = c.ChargeDeploymentHour(account_id=a, deployment_id="h100", hour_index=1,
                                  idempotency_key="deployment:h100:hour:1")

    background.start_worker(threads=2)
    background.actors.execute_commands.send([payloads.dump(hour)])  # as the scheduler sends it
    await asyncio.to_thread(drain, background)

    (d,) = await wledger.deployments(a)
    assert (d.status, d.hours_charged) == ("running", 2)
    assert (await wledger.balance(a)).balance_ucr == 1_010_000 + 20 * C - 3_990_000
    assert len(client.v1.payment_intents.list(params={"customer": customer.id}).data) == 1


async def test_an_hour_delivered_again_after_it_paused_replays_the_pause(
        background: Background, wledger: Ledger, clock: ManualClock, caplog: pytest.LogCaptureFixture) -> None:
    a = "dry"
    await wledger.execute(c.OpenAccount(account_id=a, name=a, plan="free"))  # 5 signup credits
    await wledger.execute(c.StartDeployment(account_id=a, deployment_id="h100", instance_type="gpu-l"))  # 1.01 left
    clock.advance(timedelta(hours=1))
    hour = c.ChargeDeploymentHour(account_id=a, deployment_id="h100", hour_index=1,
                                  idempotency_key="deployment:h100:hour:1")

    background.start_worker(threads=2)
    background.actors.execute_commands.send([payloads.dump(hour)])  # unpaid, no refill set: it pauses
    await asyncio.to_thread(drain, background)
    (d,) = await wledger.deployments(a)
    assert (d.status, d.hours_charged) == ("paused", 1)
    before = await wledger.entries(a, limit=50)
    # The same hour again (a redelivery, or a second tick sent before the pause committed): the
    # pause is its first result, replayed; no conflict with the key its first delivery recorded.
    with caplog.at_level("WARNING", logger="workers.actors"):
        background.actors.execute_commands.send([payloads.dump(hour)])
        await asyncio.to_thread(drain, background)
    assert [r.getMessage() for r in caplog.records if r.name == "workers.actors"] == []
    assert [e.event_id for e in await wledger.entries(a, limit=50)] == [e.event_id for e in before]
