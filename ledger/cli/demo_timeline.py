"""The demo's timeline: each result counted, the ids later hours need remembered, and one line
printed for what a reader would want to see (a purchase, a deployment, a budget crossed, debt)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from ledger import commands as c
from ledger.cli import render
from ledger.cli.demo_month import AI, BUDGET_UCR, LABELS, DeploymentHours, Month
from ledger.clock import ManualClock
from ledger.errors import LedgerError
from ledger.events import (
    AllowanceGranted,
    CouponApplied,
    CreditsGranted,
    CreditsPurchased,
    CreditsReleased,
    CreditsReserved,
    DebtSettled,
    DeploymentPaused,
    DeploymentResumed,
    DeploymentStarted,
    DeploymentStopped,
    Event,
    GrantExpired,
    RefundIssued,
    UsageMetered,
)
from ledger.money import format_credits
from ledger.store import Result


@dataclass
class Timeline:
    """What came back from the month's commands: counts, budget and debt seen, notes printed."""

    month: Month
    clock: ManualClock
    out: Console
    commands: int = 0
    appended: int = 0
    replayed: int = 0
    refused: int = 0
    ai_spent_ucr: int = 0
    alerts: set[int] = field(default_factory=set)
    in_debt: set[str] = field(default_factory=set)
    #: While the month runs, notes print above its progress bar.
    progress: Progress | None = None

    def take(self, cmd: c.Command, result: Result) -> None:
        """Count a result and remember what later hours need (grant, reservation, deployment ids)."""
        if isinstance(result, LedgerError):
            self.refused += 1
            self.note(cmd.account_id, f"[red]refused[/] {type(cmd).__name__}: {escape(result.detail)}")
            return
        if result.replayed:
            self.replayed += 1
        else:
            self.appended += len(result.events)
        for event in result.events:
            self.follow(cmd, event)

    def follow(self, cmd: c.Command, e: Event) -> None:
        """Track one event (deployment hours, ids for later steps, budget) and note what matters."""
        a = e.account_id
        match e:
            case UsageMetered():
                if e.deployment_id is not None and e.hour_index is not None:
                    self.month.deployments[e.deployment_id].next_hour = e.hour_index + 1
                elif e.reservation_id is not None:
                    self.note(a, f"training run settled: {e.quantities.get('minutes')} min,"
                                 f" {format_credits(e.cost_ucr)} credits")
                if e.debt_added_ucr and a not in self.in_debt:
                    self.in_debt.add(a)
                    self.note(a, f"[yellow]usage beyond every grant[/]: {format_credits(e.debt_added_ucr)} credits"
                                 " of debt (metered usage is never refused)")
                if a == self.month.ids[AI] and e.occurred_at < self.month.next_month:
                    self.ai_spent_ucr += e.cost_ucr
                    self.budget_alerts()
            case DeploymentStarted():
                self.month.deployments[e.deployment_id] = DeploymentHours(a)
                self.note(a, f"deployment {e.deployment_id} started on {e.instance_type}"
                             f" ({format_credits(e.hourly_ucr)} credits/hour)")
            case DeploymentPaused():
                self.month.deployments[e.deployment_id].running = False
                self.note(a, f"deployment {e.deployment_id} paused: {e.reason}")
            case DeploymentResumed():
                self.month.deployments[e.deployment_id].running = True
                self.note(a, f"deployment {e.deployment_id} resumed")
            case DeploymentStopped():
                d = self.month.deployments[e.deployment_id]
                d.running = False
                self.note(a, f"deployment {e.deployment_id} stopped after {d.next_hour} hours")
            case CreditsReserved():
                if cmd.idempotency_key is not None:
                    self.month.reservations[cmd.idempotency_key] = e.reservation_id
                self.note(a, f"reserved {format_credits(e.held_ucr)} credits for {e.operation}")
            case CreditsReleased():
                self.note(a, f"released {format_credits(e.released_ucr)} unused credits ({e.reason})")
            case CreditsPurchased():
                self.month.purchases[cmd.idempotency_key or str(e.event_id)] = e.event_id  # its ledger entry id
                what = f"pack {e.pack_id}" if e.pack_id else e.kind
                self.note(a, f"purchase {e.stripe_payment_intent}: {what},"
                             f" {render.money(e.cents_paid, self.month.card.currency)}"
                             f" -> {format_credits(e.amount_ucr)} credits")
            case CouponApplied():
                self.note(a, f"coupon {e.code}: {format_credits(e.amount_ucr)} credits"
                             f" until {render.when(e.expires_at)}")
            case CreditsGranted():
                self.note(a, f"{e.source} grant ({e.reason}): {format_credits(e.amount_ucr)} credits"
                             f" until {render.when(e.expires_at)}")
            case RefundIssued():
                capped = " (capped at what was left)" if e.capped else ""
                self.note(a, f"refund {e.direction}: {render.signed(e.amount_ucr)} credits, {e.reason}{capped}")
            case GrantExpired():
                self.note(a, f"{e.source} grant expired: {format_credits(e.expired_ucr)} credits")
            case AllowanceGranted():
                if e.cycle > 0:
                    self.note(a, f"{e.plan} allowance for cycle {e.cycle}: {format_credits(e.amount_ucr)} credits")
            case DebtSettled():
                self.in_debt.discard(a)
                self.note(a, f"debt settled: {format_credits(e.settled_ucr)} credits")

    def budget_alerts(self) -> None:
        """Say once when the AI account's month spend crosses 80 %, 95 % and 100 % of its budget."""
        for pct, level in ((80, "warning"), (95, "critical"), (100, "limit reached")):
            if pct not in self.alerts and self.ai_spent_ucr * 100 >= BUDGET_UCR * pct:
                self.alerts.add(pct)
                self.note(self.month.ids[AI], f"[yellow]budget {level}[/]: {format_credits(self.ai_spent_ucr)} of"
                                        f" {format_credits(BUDGET_UCR)} credits spent this month ({pct} %)")

    def note(self, account_id: str, message: str) -> None:
        """One timeline line: simulated time, product, what happened (Rich markup)."""
        product = next((LABELS[p] for p, i in self.month.ids.items() if i == account_id), account_id)
        line = f"[dim]{render.when(self.clock.now())}[/]  {product:<9}  {message}"
        (self.progress.console if self.progress is not None else self.out).print(line)
