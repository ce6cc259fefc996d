"""The relay's alert screen: a check is sent only when an alert is due and not yet raised, at most
one per account (and run) per batch, and no crossing is ever skipped."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import text

from ledger import commands as c
from ledger.alerts import AlertSpec, due_alerts
from ledger.clock import ManualClock
from ledger.errors import LedgerError
from ledger.events import Attribution, BudgetSet, CreditsGranted, UsageMetered
from ledger.log import LogEntry, LogPosition, load_checkpoint
from ledger.service import Ledger
from tests.workers.conftest import drain
from workers.actors import relay_sender
from workers.relay import CHECKPOINT, AlertScreen, Plan, Relay, Target, plan, select_checks
from workers.runner import Background

CREDIT = 1_000_000


class Counting:
    """The relay's ``send``, counting the alert checks it hands to the broker per batch."""

    def __init__(self, bg: Background) -> None:
        self.inner = relay_sender(bg.actors)
        self.checks: list[list[Target]] = []

    def __call__(self, p: Plan) -> None:
        self.inner(p)
        self.checks.append(list(p.alerts))

    def sent(self) -> list[Target]:
        return [t for batch in self.checks for t in batch]


def screened_relay(bg: Background, ledger: Ledger, send: Counting, *, batch: int = 1000,
                   recheck_s: float = 5.0) -> Relay:  # float-ok: a duration
    return Relay(ledger.engine, send, batch=batch, screen=AlertScreen(ledger.clock, lambda: ledger.card,
                                                                      recheck_s=recheck_s))


async def caught_up(relay: Relay, ledger: Ledger) -> None:
    """Relay until the checkpoint passes the newest committed event."""
    async with ledger.engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT tx_id::text::bigint AS tx, position FROM events ORDER BY tx_id DESC, position DESC LIMIT 1"
        ))).first()
    newest = LogPosition(row.tx, row.position) if row else LogPosition()
    for _ in range(2000):  # a transaction elsewhere on the server may hold the horizon for a moment
        await relay.run_once()
        async with ledger.engine.connect() as conn:
            if await load_checkpoint(conn, CHECKPOINT) >= newest:
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the relay never caught up")


async def settle(relay: Relay, bg: Background, ledger: Ledger) -> None:
    """Relay, let the worker run every check, relay the alerts it raised (nothing follows from them)."""
    await caught_up(relay, ledger)
    await asyncio.to_thread(drain, bg)
    await caught_up(relay, ledger)
    await asyncio.to_thread(drain, bg)


async def alerts_of(ledger: Ledger, account: str) -> list[tuple[str, str, str, int]]:
    return sorted((e.kind, e.subject, e.period, e.threshold_pct)  # type: ignore[union-attr]
                  for _, e in await ledger.notifications(account, limit=500))


async def due_and_not_raised(ledger: Ledger, account: str, attributions: set[Attribution]) -> list[str]:
    """What a check would still raise, judged on the writer's full state (not the screen's view)."""
    now = ledger.clock.now()
    due: set[str] = set()
    async with ledger.engine.connect() as conn:
        for attribution in attributions | {Attribution()}:
            state = await ledger.store.snapshot(conn, c.CheckAlerts(account_id=account, attribution=attribution),
                                                now, ledger.card)
            due |= {spec.key for spec in due_alerts(state, now, ledger.card)}
        fired = set((await conn.execute(text(
            "SELECT key FROM idempotency_keys WHERE account_id = :a AND key = ANY(:k)"),
            {"a": account, "k": sorted(due)})).scalars())
    return sorted(due - fired)


# ---- the pure parts --------------------------------------------------------------------------------


def usage(account: str, amount: int, agent: str | None = None, run: str | None = None) -> LogEntry:
    now = datetime.now(UTC)
    e = UsageMetered(event_id=uuid4(), account_id=account, occurred_at=now, recorded_at=now, amount_ucr=-amount,
                     balance_after_ucr=0, operation="email", quantities={"messages": amount},
                     attribution=Attribution(agent=agent, run=run), cost_ucr=amount, exact_cost=str(amount),
                     rate_card_version="v", gated=False)
    return LogEntry(LogPosition(1, 1), e)


def test_plan_marks_the_accounts_whose_conditions_may_have_eased() -> None:
    now = datetime.now(UTC)
    granted = CreditsGranted(event_id=uuid4(), account_id="g", occurred_at=now, recorded_at=now, amount_ucr=5,
                             balance_after_ucr=5, grant_id=UUID(int=1), source="promotion", reason="r")
    budget = BudgetSet(event_id=uuid4(), account_id="b", occurred_at=now, recorded_at=now, balance_after_ucr=0,
                       monthly_limit_ucr=10, warn_pct=80, critical_pct=95, hard_stop=False)
    p = plan([usage("u", 5), LogEntry(LogPosition(1, 2), granted), LogEntry(LogPosition(1, 3), budget)], {})
    assert p.eased == {"g", "b"}, "spending eases nothing; credits added and a budget changed may"
    # Spending calls for a check, and so does a budget (it may already be exceeded); a grant does not.
    assert set(p.alerts) == {("u", None, None, None), ("b", None, None, None)}


def test_many_events_of_one_account_make_at_most_one_check() -> None:
    p = plan([usage("a", 5) for _ in range(500)] + [usage("a", 5, agent="bot") for _ in range(500)], {})
    assert len(p.alerts) == 2, "one candidate per account and subject"
    budget = AlertSpec("budget", "account", "", "M2026-11", 80)
    checks, covered = select_checks(p.alerts, {"a": [budget]}, {}, 100.0, 5.0)
    assert len(checks) == 1 and covered == {"a": [budget.key]}
    assert select_checks(p.alerts, {}, {}, 100.0, 5.0)[0] == {}, "nothing due: no check"
    # A check covering the key went out 1 s ago: none again until recheck_s has passed.
    assert select_checks(p.alerts, {"a": [budget]}, {"a": {budget.key: 99.0}}, 100.0, 5.0)[0] == {}
    assert len(select_checks(p.alerts, {"a": [budget]}, {"a": {budget.key: 94.0}}, 100.0, 5.0)[0]) == 1


def test_a_run_alert_goes_to_a_check_that_reads_that_run() -> None:
    p = plan([usage("a", 5), usage("a", 5, agent="bot", run="r1"), usage("a", 5, agent="bot", run="r2")], {})
    r2 = AlertSpec("agent_limit", "agent", "bot", "Rr2", 100)
    budget = AlertSpec("budget", "account", "", "M2026-11", 80)
    checks, _ = select_checks(p.alerts, {"a": [budget, r2]}, {}, 0.0, 5.0)
    assert list(checks) == [("a", "bot", None, "r2")], "the r2 check also covers the account's budget"
    assert checks[("a", "bot", None, "r2")] == {"agent": "bot", "run": "r2"}


# ---- against the database, the broker and a worker --------------------------------------------------


async def test_a_batch_of_crossings_sends_one_check_and_quiet_accounts_none(
        background: Background, wledger: Ledger) -> None:
    for account, credits in (("crossing", 100), ("quiet", 1000)):
        await wledger.execute(c.OpenAccount(account_id=account, name=account, plan="free"))
        await wledger.execute(c.GrantCredits(account_id=account, amount_ucr=credits * CREDIT, source="purchase",
                                             reason="t"))
    await wledger.execute(c.SetBudget(account_id="crossing", monthly_limit_ucr=10 * CREDIT))
    send = Counting(background)
    relay = screened_relay(background, wledger, send)
    await caught_up(relay, wledger)
    assert send.sent() == [], "opening and funding call for no check"

    # 12 one-credit charges on a 10-credit budget (80, 95 and 100 % crossed) and 200 quiet ones.
    await wledger.execute_many([c.Meter(account_id="crossing", operation="email", quantity=1000,
                                        idempotency_key=f"x{i}") for i in range(12)]
                               + [c.Meter(account_id="quiet", operation="email", quantity=1000,
                                          idempotency_key=f"q{i}") for i in range(200)])
    background.start_worker(threads=2)
    await settle(relay, background, wledger)
    assert send.sent() == [("crossing", None, None, None)], send.checks
    assert [(k, p) for k, _, _, p in await alerts_of(wledger, "crossing")] == [
        ("budget", 80), ("budget", 95), ("budget", 100)]
    assert await alerts_of(wledger, "quiet") == []

    # Past every threshold, with each alert raised: more spending sends nothing.
    await wledger.execute_many([c.Meter(account_id="crossing", operation="email", quantity=1000,
                                        idempotency_key=f"y{i}") for i in range(20)])
    await settle(relay, background, wledger)
    assert len(send.sent()) == 1


async def test_a_budget_set_below_this_months_spend_alerts_at_once(
        background: Background, wledger: Ledger) -> None:
    """12 credits spent with no budget raise nothing; setting a 10-credit budget then raises the
    80, 95 and 100 % alerts with no further charge (the operator learns now, not at the next spend)."""
    await wledger.execute(c.OpenAccount(account_id="late-budget", name="late-budget", plan="free"))
    await wledger.execute(c.GrantCredits(account_id="late-budget", amount_ucr=100 * CREDIT, source="purchase",
                                         reason="t"))
    await wledger.execute_many([c.Meter(account_id="late-budget", operation="email", quantity=1000,
                                        idempotency_key=f"s{i}") for i in range(12)])
    send = Counting(background)
    relay = screened_relay(background, wledger, send)
    background.start_worker(threads=1)
    await settle(relay, background, wledger)
    assert await alerts_of(wledger, "late-budget") == []

    await wledger.execute(c.SetBudget(account_id="late-budget", monthly_limit_ucr=10 * CREDIT))
    await settle(relay, background, wledger)
    assert [(k, p) for k, _, _, p in await alerts_of(wledger, "late-budget")] == [
        ("budget", 80), ("budget", 95), ("budget", 100)]


async def test_a_check_that_found_nothing_does_not_silence_the_next_crossing(
        background: Background, wledger: Ledger) -> None:
    """A check is sent for a low balance; credits arrive before it runs, so it raises nothing; the
    balance drops again. The screen remembered the first check (its key is covered for an hour
    here) but the grant in the log made it forget: the second drop is checked and fires."""
    await wledger.execute(c.OpenAccount(account_id="swing", name="swing", plan="free"))  # 5 signup credits
    send = Counting(background)
    relay = screened_relay(background, wledger, send, recheck_s=3600)
    await caught_up(relay, wledger)
    await wledger.execute(c.Meter(account_id="swing", operation="email", quantity=1000))  # 4 < 5: low
    await caught_up(relay, wledger)
    assert len(send.sent()) == 1
    await wledger.execute(c.GrantCredits(account_id="swing", amount_ucr=10 * CREDIT, source="purchase",
                                         reason="t"))
    background.start_worker(threads=1)
    await settle(relay, background, wledger)
    assert await alerts_of(wledger, "swing") == [], "14 credits when the check ran: not low"

    await wledger.execute(c.Meter(account_id="swing", operation="email", quantity=12_000))  # 2 < 5
    await settle(relay, background, wledger)
    assert len(send.sent()) == 2, send.checks
    assert [k for k, *_ in await alerts_of(wledger, "swing")] == ["low_balance"]


async def test_no_crossing_is_skipped_under_random_load(
        background: Background, wledger: Ledger, clock: ManualClock) -> None:
    """Random spending, holds, grants, budget and limit changes, deployments and days passing on
    accounts near every kind of threshold, relayed in small batches through a screen that
    remembers its checks for an hour, while a worker runs them. After each round, every account
    that had an alerting event has nothing left due and unraised, judged on the full state: a
    screen that skipped a crossing leaves an alert behind and fails here."""
    rng = random.Random(20261101)
    accounts = [f"rnd{i}" for i in range(8)]
    for i, account in enumerate(accounts):
        await wledger.execute(c.OpenAccount(account_id=account, name=account, plan="free"))
        await wledger.execute(c.GrantCredits(account_id=account, amount_ucr=rng.randint(2, 40) * CREDIT,
                                             source="purchase", reason="t"))
        if i % 2 == 0:
            await wledger.execute(c.SetBudget(account_id=account, monthly_limit_ucr=rng.randint(5, 30) * CREDIT,
                                              warn_pct=rng.choice([50, 80]), critical_pct=rng.choice([90, 95])))
        if i % 3 == 0:
            await wledger.execute(c.SetLimit(account_id=account, scope="agent", subject="bot",
                                             per_run_ucr=3 * CREDIT, per_day_ucr=8 * CREDIT,
                                             per_month_ucr=25 * CREDIT))
    send = Counting(background)
    relay = screened_relay(background, wledger, send, batch=5, recheck_s=3600)
    background.start_worker(threads=2)
    await settle(relay, background, wledger)
    attributions = [Attribution(), Attribution(agent="bot"), Attribution(agent="bot", run="r1"),
                    Attribution(agent="bot", run="r2"), Attribution(member="ann")]
    holds: dict[str, list[UUID]] = {a: [] for a in accounts}
    total_events = 0

    async def one(account: str, touched: dict[str, set[Attribution]]) -> None:
        nonlocal total_events
        op = rng.choices(["meter", "grant", "reserve", "release", "budget", "limit", "start", "stop"],
                         weights=[10, 2, 2, 2, 1, 1, 1, 1])[0]
        cmd: Any
        attribution = rng.choice(attributions)
        if op == "meter":
            cmd = c.Meter(account_id=account, operation="email", quantity=rng.randint(200, 4000),
                          attribution=attribution)
        elif op == "grant":
            cmd = c.GrantCredits(account_id=account, amount_ucr=rng.randint(1, 10) * CREDIT, source="purchase",
                                 reason="t")
        elif op == "reserve":
            cmd = c.Reserve(account_id=account, operation="email", amount_ucr=rng.randint(1, 5) * CREDIT)
        elif op == "release" and holds[account]:
            cmd = c.Release(account_id=account, reservation_id=holds[account].pop())
        elif op == "budget":
            cmd = c.SetBudget(account_id=account, monthly_limit_ucr=rng.randint(5, 60) * CREDIT)
        elif op == "limit":
            cmd = c.SetLimit(account_id=account, scope="agent", subject="bot", per_run_ucr=rng.randint(1, 6) * CREDIT,
                             per_day_ucr=rng.randint(3, 12) * CREDIT)
        elif op == "start":
            cmd = c.StartDeployment(account_id=account, deployment_id=f"d{rng.randint(1, 2)}", instance_type="gpu-s")
        else:
            cmd = c.StopDeployment(account_id=account, deployment_id=f"d{rng.randint(1, 2)}")
        try:
            outcome = await wledger.execute(cmd)
        except LedgerError:  # refused (402, not running, ...): nothing happened
            return
        for e in outcome.events:
            total_events += 1
            if e.type == "CreditsReserved":
                holds[account].append(e.reservation_id)
            if e.type in ("UsageMetered", "CreditsReserved", "GrantExpired", "RefundIssued"):
                touched.setdefault(account, set()).add(
                    e.attribution if isinstance(e, UsageMetered) else Attribution())

    for round_ in range(8):
        if round_ in (3, 6):
            clock.advance(timedelta(days=1, hours=1))  # a new day: day limits and daily alerts start over
        touched: dict[str, set[Attribution]] = {}
        for _ in range(rng.randint(10, 25)):
            await one(rng.choice(accounts), touched)
        if rng.random() < 0.5:  # some checks go out (and may run) before the rest of the round commits
            await caught_up(relay, wledger)
        for _ in range(rng.randint(5, 15)):
            await one(rng.choice(accounts), touched)
        await settle(relay, background, wledger)
        for account, used in sorted(touched.items()):
            assert await due_and_not_raised(wledger, account, used) == [], (round_, account)

    raised = [a for account in accounts for a in await alerts_of(wledger, account)]
    assert {k for k, *_ in raised} >= {"budget", "agent_limit", "low_balance", "deployment_cost"}, raised
    assert len(send.sent()) < total_events / 2, "the screen sent a check for most events"
