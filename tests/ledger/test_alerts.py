"""Alerts: each threshold fires once per period, again the next period; checks race safely."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from ledger import commands as c
from ledger.alert_views import load_views
from ledger.alerts import due_alerts, facts, run_counters
from ledger.clock import ManualClock
from ledger.events import AlertRaised, Attribution, DeploymentPaused, Event
from ledger.service import Ledger
from tests.ledger.conftest import OpenAccount

CREDIT = 1_000_000


def kinds(events: list[Event]) -> list[tuple[str, int]]:
    return [(e.kind, e.threshold_pct) for e in events if isinstance(e, AlertRaised)]


async def spend(ledger: Ledger, account: str, credits: int, **attribution: str) -> None:
    # email costs 0.001 credits per message in the test suite's frozen card
    await ledger.execute(c.Meter(account_id=account, operation="email", quantity=credits * 1000,
                                 attribution=Attribution(**attribution)))


async def test_budget_thresholds_fire_once_per_month_and_again_next_month(
        ledger: Ledger, open_account: OpenAccount, clock: ManualClock) -> None:
    acct = await open_account(credits_ucr=100 * CREDIT, plain=False)
    await ledger.execute(c.SetBudget(account_id=acct, monthly_limit_ucr=10 * CREDIT, warn_pct=80, critical_pct=95))
    await spend(ledger, acct, 7)
    assert kinds(await ledger.raise_due_alerts(acct)) == []
    await spend(ledger, acct, 1)
    assert kinds(await ledger.raise_due_alerts(acct)) == [("budget", 80)]
    assert kinds(await ledger.raise_due_alerts(acct)) == [], "once per period"
    await spend(ledger, acct, 2)
    assert kinds(await ledger.raise_due_alerts(acct)) == [("budget", 95), ("budget", 100)]
    assert kinds(await ledger.raise_due_alerts(acct)) == []

    clock.advance(timedelta(days=31))
    assert kinds(await ledger.raise_due_alerts(acct)) == []
    await spend(ledger, acct, 8)
    assert kinds(await ledger.raise_due_alerts(acct)) == [("budget", 80)], "again the next month"
    notes = await ledger.notifications(acct)
    assert kinds([e for _, e in notes]) == [("budget", 80), ("budget", 100), ("budget", 95),
                                                               ("budget", 80)]


async def test_agent_limit_alerts_per_day(ledger: Ledger, open_account: OpenAccount, clock: ManualClock) -> None:
    acct = await open_account(credits_ucr=100 * CREDIT, plain=False)
    await ledger.execute(c.SetLimit(account_id=acct, scope="agent", subject="bot", per_day_ucr=5 * CREDIT))
    await spend(ledger, acct, 4, agent="bot")
    await spend(ledger, acct, 4, agent="other")
    raised = await ledger.raise_due_alerts(acct)
    assert [(e.kind, e.subject, e.threshold_pct) for e in raised if isinstance(e, AlertRaised)] == [
        ("agent_limit", "bot", 80)]
    clock.advance(timedelta(days=1))
    await spend(ledger, acct, 5, agent="bot")
    assert kinds(await ledger.raise_due_alerts(acct)) == [("agent_limit", 80), ("agent_limit", 100)]


async def test_low_balance_fires_once_a_day(ledger: Ledger, open_account: OpenAccount, clock: ManualClock) -> None:
    acct = await open_account(credits_ucr=3 * CREDIT)
    assert kinds(await ledger.raise_due_alerts(acct)) == [("low_balance", 100)]
    assert kinds(await ledger.raise_due_alerts(acct)) == []
    clock.advance(timedelta(days=1))
    assert kinds(await ledger.raise_due_alerts(acct)) == [("low_balance", 100)]
    rich = await open_account(credits_ucr=50 * CREDIT)
    assert kinds(await ledger.raise_due_alerts(rich)) == []


async def test_concurrent_checks_raise_each_alert_once(ledger: Ledger, open_account: OpenAccount) -> None:
    acct = await open_account(credits_ucr=100 * CREDIT, plain=False)
    await ledger.execute(c.SetBudget(account_id=acct, monthly_limit_ucr=10 * CREDIT))
    await spend(ledger, acct, 10)
    results = await asyncio.gather(*(ledger.raise_due_alerts(acct) for _ in range(8)))
    assert sorted(k for r in results for k in kinds(r)) == [("budget", 80), ("budget", 95), ("budget", 100)]
    assert len(await ledger.notifications(acct)) == 3


async def test_debt_pauses_running_deployments(ledger: Ledger, open_account: OpenAccount) -> None:
    acct = await open_account(credits_ucr=2 * CREDIT, plain=False)
    await ledger.execute(c.StartDeployment(account_id=acct, deployment_id="d1", instance_type="gpu-s"))
    assert (await ledger.execute(c.PauseForDebt(account_id=acct))).events == (), "not in debt: nothing"
    await spend(ledger, acct, 8)
    assert (await ledger.balance(acct)).debt_ucr > 0
    paused = (await ledger.execute(c.PauseForDebt(account_id=acct))).events
    assert [(e.deployment_id, e.reason) for e in paused if isinstance(e, DeploymentPaused)] == [("d1", "in_debt")]
    assert (await ledger.deployments(acct))[0].status == "paused"
    assert (await ledger.execute(c.PauseForDebt(account_id=acct))).events == (), "already paused"


async def test_deployment_cost_fires_when_running_deployments_outrun_the_balance(
        ledger: Ledger, open_account: OpenAccount, clock: ManualClock) -> None:
    acct = await open_account(credits_ucr=30 * CREDIT)  # gpu-m costs more than 30 credits a day
    assert kinds(await ledger.raise_due_alerts(acct)) == []
    await ledger.execute(c.StartDeployment(account_id=acct, deployment_id="big", instance_type="gpu-m"))
    raised = await ledger.raise_due_alerts(acct)
    assert kinds(raised) == [("deployment_cost", 100)]
    assert "lasts about" in raised[0].message  # type: ignore[union-attr]
    assert kinds(await ledger.raise_due_alerts(acct)) == [], "once a day"
    await ledger.execute(c.StopDeployment(account_id=acct, deployment_id="big"))
    clock.advance(timedelta(days=1))
    assert kinds(await ledger.raise_due_alerts(acct)) == [], "nothing running: no alert"


async def test_checks_read_a_view_that_decides_like_the_full_state(
        ledger: Ledger, open_account: OpenAccount, clock: ManualClock) -> None:
    """Checks (and the relay's screen) decide on ``AlertView``, the writer re-checks on the full
    ``AccountState``: both must find the same alerts due, or a check could skip what holds."""
    rich = await open_account(credits_ucr=100 * CREDIT)
    budget = await open_account(credits_ucr=100 * CREDIT, plain=False)
    await ledger.execute(c.SetBudget(account_id=budget, monthly_limit_ucr=10 * CREDIT, warn_pct=50, critical_pct=90))
    await spend(ledger, budget, 9)
    limited = await open_account(credits_ucr=100 * CREDIT)
    await ledger.execute(c.SetLimit(account_id=limited, scope="agent", subject="bot", per_run_ucr=2 * CREDIT,
                                    per_day_ucr=5 * CREDIT, per_month_ucr=50 * CREDIT))
    await ledger.execute(c.SetLimit(account_id=limited, scope="member", subject="ann", per_day_ucr=3 * CREDIT))
    await spend(ledger, limited, 4, agent="bot", run="r1")
    await spend(ledger, limited, 1, agent="bot", run="r2")
    await spend(ledger, limited, 3, agent="other", member="ann", run="r1")
    held = await open_account(credits_ucr=8 * CREDIT)  # 8 credits, 4 of them held: available 4 < 5
    await ledger.execute(c.Reserve(account_id=held, operation="email", amount_ucr=4 * CREDIT))
    debtor = await open_account(credits_ucr=1 * CREDIT)
    await spend(ledger, debtor, 3)
    deployed = await open_account(credits_ucr=60 * CREDIT)
    await ledger.execute(c.StartDeployment(account_id=deployed, deployment_id="on", instance_type="gpu-m"))
    await ledger.execute(c.StartDeployment(account_id=deployed, deployment_id="off", instance_type="gpu-s"))
    await ledger.execute(c.PauseDeployment(account_id=deployed, deployment_id="off"))
    clock.advance(timedelta(hours=1))

    now, card = clock.now(), ledger.card
    seen: set[tuple[str, str]] = set()
    for acct in (rich, budget, limited, held, debtor, deployed):
        for attribution in (None, Attribution(agent="bot", run="r1"), Attribution(agent="bot", run="r2"),
                            Attribution(member="ann", run="r1"), Attribution(agent="bot")):
            async with ledger.engine.connect() as conn:
                state = await ledger.store.snapshot(
                    conn, c.CheckAlerts(account_id=acct, attribution=attribution or Attribution()), now, card)
                view = (await load_views(conn, {acct: run_counters(attribution)}, now))[acct]
            assert view.available_ucr == state.available_ucr
            due = due_alerts(view, now, card)
            assert due == due_alerts(state, now, card), (acct, attribution)
            assert [facts(view, spec, card) for spec in due] == [facts(state, spec, card) for spec in due]
            seen |= {(spec.kind, spec.period[:1]) for spec in due}
    # Not vacuous: every kind of condition held somewhere above.
    assert seen >= {("budget", "M"), ("agent_limit", "D"), ("agent_limit", "R"), ("member_limit", "D"),
                    ("low_balance", "D"), ("deployment_cost", "D")}, seen
