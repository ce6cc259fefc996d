"""Usage reads and analytics over a generated month of metered usage, against figures the test
works out itself from what it recorded (each event's cost as the ledger charged it), never from
the code under test."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.errors import InvalidRequest, NotFound, UnknownAccount
from ledger.events import Attribution, UsageMetered
from ledger.service import Ledger
from projections.queries import usage as q
from tests.projections.conftest import OpenAccount
from tests.projections.folding import fold_all

START = datetime(2026, 10, 20, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "claude-haiku")
#: The test card's integrations, written out by hand.
INTEGRATION = {"gpt-4o": "ai", "gpt-4o-mini": "ai", "claude-sonnet-4": "ai", "claude-haiku": "ai", "email": "email",
               "sms": "sms", "image_generate": "image", "gpu-s": "compute"}


@dataclass(frozen=True)
class Used:
    event: UsageMetered

    @property
    def at(self) -> datetime:
        return self.event.occurred_at

    @property
    def day(self) -> date:
        return self.event.occurred_at.astimezone(UTC).date()


async def generate_month(ledger: Ledger, clock: ManualClock, account: str) -> list[Used]:
    """A month of usage (Oct 21 - Nov 20) over four models, email, SMS and images, some attributed
    to two deployments; and a deployment started on Nov 18 and charged every hour since."""
    rng = random.Random(16)
    clock.set(NOW)
    used: list[Used] = []
    day = datetime(2026, 10, 21, tzinfo=UTC)
    while day < NOW:
        for i in range(rng.randint(3, 9)):
            at = day + timedelta(minutes=rng.randrange(0, 24 * 60))
            if at >= NOW:
                continue
            operation = rng.choice([*MODELS, *MODELS, "email", "sms", "image_generate"])
            if operation in MODELS:
                quantities = {"input_tokens": rng.randint(50, 40_000), "output_tokens": rng.randint(0, 8_000)}
            else:
                quantities = {"messages" if operation in ("email", "sms") else "images": rng.randint(1, 50)}
            attribution = Attribution(deployment=rng.choice([None, "dep-a", "dep-b"]), agent=f"agent-{i % 3}",
                                      flow=rng.choice(["onboarding", "support"]))
            outcome = await ledger.execute(c.Meter(
                account_id=account, operation=operation, quantities=quantities, attribution=attribution,
                occurred_at=at, idempotency_key=f"gen-{len(used)}"))
            [event] = [e for e in outcome.events if isinstance(e, UsageMetered)]
            used.append(Used(event))
        day += timedelta(days=1)
    clock.set(datetime(2026, 11, 18, tzinfo=UTC))
    started = await ledger.execute(c.StartDeployment(account_id=account, deployment_id="dep-idle",
                                                     instance_type="gpu-s"))
    used += [Used(e) for e in started.events if isinstance(e, UsageMetered)]
    clock.set(NOW)
    for hour in range(1, 61):
        charged = await ledger.execute(c.ChargeDeploymentHour(account_id=account, deployment_id="dep-idle",
                                                               hour_index=hour))
        used += [Used(e) for e in charged.events if isinstance(e, UsageMetered)]
    return used


@pytest.fixture
async def month(ledger: Ledger, clock: ManualClock, open_account: OpenAccount) -> tuple[str, list[Used]]:
    clock.set(START)
    account = await open_account(plan="pro", credits_ucr=10**12, prefix="month")
    used = await generate_month(ledger, clock, account)
    await fold_all(ledger.engine)
    return account, used


@pytest.mark.parametrize("days", [7, 14, 30])
async def test_analytics_equal_figures_worked_out_from_the_generated_month(
        ledger: Ledger, month: tuple[str, list[Used]], days: int) -> None:
    account, used = month
    # A budget the month is on course to exceed.
    await ledger.execute(c.SetBudget(account_id=account, monthly_limit_ucr=1_000_000))
    await fold_all(ledger.engine)
    report = await q.analytics(ledger, account, days)
    a = report.figures

    first = date(2026, 11, 20) - timedelta(days=days - 1)
    window = [u for u in used if u.day >= first]
    per_day: dict[date, int] = defaultdict(int)
    for u in window:
        per_day[u.day] += u.event.cost_ucr
    assert [(p.day, p.cost_ucr) for p in a.series] == [
        (first + timedelta(days=i), per_day[first + timedelta(days=i)]) for i in range(days)]
    total = sum(u.event.cost_ucr for u in window)
    assert a.window_total_ucr == total and total > 0
    assert a.daily_average_ucr == total // days
    this_period = sum(u.event.cost_ucr for u in used if u.day >= date(2026, 11, 1))
    assert a.this_period_ucr == this_period
    assert a.projected_month_end_ucr == this_period + (total // days) * 10  # Nov 21..30

    models: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for u in window:
        if u.event.operation in MODELS:
            m = models[u.event.operation]
            m[0] += u.event.cost_ucr
            m[1] += 1
            m[2] += u.event.quantities.get("input_tokens", 0)
            m[3] += u.event.quantities.get("output_tokens", 0)
    assert {m.key: [m.cost_ucr, m.events, m.input_tokens, m.output_tokens] for m in a.by_model} == models
    assert [m.cost_ucr for m in a.by_model] == sorted((v[0] for v in models.values()), reverse=True)

    deployments: dict[str, int] = defaultdict(int)
    for u in window:
        dep = u.event.deployment_id or u.event.attribution.deployment
        if dep:
            deployments[dep] += u.event.cost_ucr
    assert {d.key: d.cost_ucr for d in a.by_deployment} == deployments

    requests = sorted((u for u in window if u.event.hour_index is None),
                      key=lambda u: (u.event.cost_ucr, u.at), reverse=True)[:10]
    assert [r.entry_id for r in a.top_requests] == [u.event.event_id for u in requests]

    # The run-out at the window's burn rate, worked out in whole microseconds.
    balance = await ledger.balance(account)
    elapsed_us = (NOW - datetime.combine(first, datetime.min.time(), UTC)) // timedelta(microseconds=1)
    expected = NOW + timedelta(microseconds=balance.available_ucr * elapsed_us // total)
    assert report.available_ucr == balance.available_ucr
    assert a.runout_at == (expected if expected - NOW <= timedelta(days=3650) else None)

    kinds = {s.kind: s for s in a.suggestions}
    assert kinds["budget"].figures["monthly_limit_ucr"] == 1_000_000
    assert kinds["idle_deployment"].figures["deployment_id"] == "dep-idle"
    assert report.freshness.lag_ms == 0 and report.freshness.as_of_position > 0


async def test_usage_days_weeks_and_months_are_sums_of_hours(ledger: Ledger, month: tuple[str, list[Used]]) -> None:
    account, used = month
    since, until = datetime(2026, 10, 25, 5, tzinfo=UTC), datetime(2026, 11, 20, 12, tzinfo=UTC)
    hours = await q.usage(ledger, account, bucket="hour", by="operation", start=since, end=until)

    # The hours themselves are the recorded events, summed per hour and operation.
    expected: dict[tuple[datetime, str], int] = defaultdict(int)
    for u in used:
        if since <= u.at < until:
            expected[u.at.replace(minute=0, second=0, microsecond=0), u.event.operation] += u.event.cost_ucr
    assert {(b.start, b.key): b.cost_ucr for b in hours.buckets} == expected

    def start_of(bucket: str, hour: datetime) -> datetime:
        d = hour.date()
        if bucket == "week":
            d -= timedelta(days=d.weekday())
        elif bucket == "month":
            d = d.replace(day=1)
        return datetime.combine(d, datetime.min.time(), UTC)

    for bucket in ("day", "week", "month"):
        summed: dict[tuple[datetime, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for b in hours.buckets:
            s = summed[start_of(bucket, b.start), b.key]
            s[0] += b.events
            s[1] += b.cost_ucr
            s[2] += b.input_tokens
            s[3] += b.output_tokens
        got = await q.usage(ledger, account, bucket=bucket, by="operation", start=since, end=until)
        assert {(b.start, b.key): [b.events, b.cost_ucr, b.input_tokens, b.output_tokens]
                for b in got.buckets} == summed, bucket
        assert got.total_ucr == hours.total_ucr

    by_integration: dict[tuple[datetime, str], int] = defaultdict(int)
    for (start, operation), cost in expected.items():
        by_integration[start_of("day", start), INTEGRATION[operation]] += cost
    got = await q.usage(ledger, account, bucket="day", by="integration", start=since, end=until)
    assert {(b.start, b.key): b.cost_ucr for b in got.buckets} == by_integration

    flows: dict[str, int] = defaultdict(int)
    for u in used:
        if since <= u.at < until and u.event.attribution.flow:
            flows[u.event.attribution.flow] += u.event.cost_ucr
    got = await q.usage(ledger, account, bucket="month", by="flow", start=since, end=until)
    per_flow: dict[str, int] = defaultdict(int)
    for b in got.buckets:
        per_flow[b.key] += b.cost_ucr
    assert per_flow == flows


async def test_one_runs_cost_by_integration_node_model_and_tool(
        ledger: Ledger, clock: ManualClock, open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=10**9)
    run = Attribution(flow="welcome", agent="greeter", execution="exec-1")
    steps = [("gpt-4o", {"input_tokens": 1_200, "output_tokens": 300}, "draft"),
             ("gpt-4o", {"input_tokens": 800, "output_tokens": 100}, "review"),
             ("email", {"messages": 2}, "send"), ("sms", {"messages": 1}, "send")]
    costs = []
    for operation, quantities, node in steps:
        outcome = await ledger.execute(c.Meter(account_id=account, operation=operation, quantities=quantities,
                                               attribution=run.model_copy(update={"node": node})))
        costs.append(outcome.events[0].amount_ucr * -1)
    other = await ledger.execute(c.Meter(account_id=account, operation="email", quantity=1))
    await fold_all(ledger.engine)

    x = await q.execution(ledger, account, "exec-1")
    assert (x.flow, x.agent, x.events, x.total_ucr) == ("welcome", "greeter", 4, sum(costs))
    assert {i.key: i.cost_ucr for i in x.by_integration} == {
        "ai": costs[0] + costs[1], "email": costs[2], "sms": costs[3]}
    assert {n.key: n.cost_ucr for n in x.by_node} == {"draft": costs[0], "review": costs[1],
                                                      "send": costs[2] + costs[3]}
    assert [(m.key, m.events, m.input_tokens) for m in x.by_model] == [("gpt-4o", 2, 2_000)]
    assert {t.key for t in x.by_tool} == {"email", "sms"}
    # Usage that named no execution is found by its entry id.
    alone = await q.execution(ledger, account, str(other.events[0].event_id))
    assert alone.events == 1 and alone.flow is None
    with pytest.raises(NotFound):
        await q.execution(ledger, account, "exec-unknown")

    # The flow's summary: its two runs, the newest first, each by integration.
    clock.advance(timedelta(minutes=5))
    later = await ledger.execute(c.Meter(account_id=account, operation="sms", quantity=4,
                                         attribution=Attribution(flow="welcome", execution="exec-2")))
    await fold_all(ledger.engine)
    f = await q.flow(ledger, account, "welcome")
    sms = later.events[0].amount_ucr * -1
    assert [(r.execution_id, r.by_integration) for r in f.runs] == [
        ("exec-2", {"sms": sms}), ("exec-1", {"ai": costs[0] + costs[1], "email": costs[2], "sms": costs[3]})]
    assert f.by_integration == {"ai": costs[0] + costs[1], "email": costs[2], "sms": costs[3] + sms}
    assert f.events == 5 and f.total_ucr == sum(costs) + sms and not f.has_more
    assert (await q.flow(ledger, account, "no-such-flow")).runs == []


async def test_reads_before_the_projectors_ran_are_empty_with_their_lag(
        ledger: Ledger, clock: ManualClock, open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=10**9)
    await ledger.execute(c.Meter(account_id=account, operation="email", quantity=3))
    clock.advance(timedelta(seconds=5))
    report = await q.analytics(ledger, account, 7)
    assert report.figures.window_total_ucr == 0 and report.figures.top_requests == []
    assert report.freshness.as_of_position == 0 and report.freshness.lag_ms > 0
    got = await q.usage(ledger, account)
    assert got.buckets == [] and got.freshness.lag_ms > 0
    with pytest.raises(NotFound):
        await q.execution(ledger, account, "anything")


async def test_bad_ranges_and_names_are_refused(ledger: Ledger, open_account: OpenAccount) -> None:
    account = await open_account()
    at = datetime(2026, 10, 1, tzinfo=UTC)
    for kwargs in ({"bucket": "year"}, {"by": "model"}, {"start": at, "end": at},
                   {"bucket": "hour", "start": at, "end": at + timedelta(days=32)},
                   {"bucket": "day", "start": at - timedelta(days=400), "end": at}):
        with pytest.raises(InvalidRequest):
            await q.usage(ledger, account, **kwargs)
    with pytest.raises(InvalidRequest):
        await q.analytics(ledger, account, 10)
    with pytest.raises(UnknownAccount):
        await q.usage(ledger, "no-such-account")
    with pytest.raises(UnknownAccount):
        await q.analytics(ledger, "no-such-account", 7)
