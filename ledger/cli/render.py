"""Rich renderings of ledger reads for the terminal. Money is always shown with ``format_credits``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from rich import box
from rich.console import Console
from rich.table import Table

from ledger.events import (
    AccountOpened,
    AllowanceGranted,
    BudgetSet,
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
    LimitSet,
    PlanChanged,
    RefundIssued,
    UsageMetered,
)
from ledger.money import format_cents, format_credits
from ledger.rates import RateCard
from ledger.views import Balance

SOURCES = ("allowance", "purchase", "promotion", "refund")


def console(*, stderr: bool = False) -> Console:
    """A console that keeps table rows on one line when output is piped (80 columns is too narrow)."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 120, highlight=False)


def when(value: datetime | None) -> str:
    """A UTC timestamp to the minute, or a dash."""
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def signed(ucr: int) -> str:
    """Credits with an explicit sign, as a ledger entry reads (+ credit, - debit)."""
    return format_credits(ucr) if ucr < 0 else f"+{format_credits(ucr)}"


def balance_table(b: Balance) -> Table:
    """The balance of one account, read from the exact inline state."""
    t = Table(title=f"balance of {b.account_id}", box=box.SIMPLE_HEAD, show_header=False)
    t.add_column("field", style="bold")
    t.add_column("credits", justify="right")
    t.add_row("plan", b.plan)
    t.add_row("status", b.status)
    t.add_row("balance", format_credits(b.balance_ucr))
    t.add_row("available", format_credits(b.available_ucr))
    t.add_row("reserved", format_credits(b.reserved_ucr))
    t.add_row("debt", format_credits(b.debt_ucr))
    for source in SOURCES:
        t.add_row(f"  {source}", format_credits(b.by_source.get(source, 0)))
    t.add_row("monthly allowance", format_credits(b.monthly_allowance_ucr))
    t.add_row("resets at", when(b.resets_at))
    return t


def describe(e: Event) -> str:
    """What an entry was about, in a few words (the history's operation column)."""
    match e:
        case UsageMetered():
            if e.deployment_id is not None:
                return f"{e.operation} {e.deployment_id} hour {e.hour_index}"
            who = e.attribution.agent or e.attribution.member or e.attribution.flow
            return f"{e.operation} ({who})" if who else e.operation
        case CreditsPurchased():
            return f"{e.kind} {e.pack_id}" if e.pack_id else e.kind
        case CouponApplied():
            return e.code
        case CreditsGranted():
            return f"{e.source}: {e.reason}"
        case AllowanceGranted():
            return f"{e.plan} cycle {e.cycle}"
        case RefundIssued():
            return f"{e.direction}: {e.reason}"
        case GrantExpired():
            return e.source
        case DebtSettled():
            return f"debt {format_credits(e.settled_ucr)}"
        case CreditsReserved():
            return f"{e.operation} hold {format_credits(e.held_ucr)}"
        case CreditsReleased():
            return f"{e.reason} {format_credits(e.released_ucr)}"
        case DeploymentStarted():
            return f"{e.deployment_id} ({e.instance_type})"
        case DeploymentPaused():
            return f"{e.deployment_id}: {e.reason}"
        case DeploymentStopped() | DeploymentResumed():
            return e.deployment_id
        case BudgetSet():
            return "no limit" if e.monthly_limit_ucr is None else f"limit {format_credits(e.monthly_limit_ucr)}"
        case LimitSet():
            return f"{e.scope} {e.subject}"
        case AccountOpened():
            return f"{e.name} ({e.plan})"
        case PlanChanged():
            return f"{e.old_plan} -> {e.new_plan}"
    return ""


def history_table(account_id: str, events: Sequence[Event], *, offset: int, total: int) -> Table:
    """One page of the account's ledger, newest first."""
    first, last = offset + 1, offset + len(events)
    caption = f"entries {first}-{last} of {total}, newest first" if events else f"no entries past {offset} of {total}"
    t = Table(title=f"history of {account_id}", caption=caption, box=box.SIMPLE_HEAD)
    t.add_column("#", justify="right")
    t.add_column("time (UTC)")
    t.add_column("type")
    t.add_column("operation")
    t.add_column("amount", justify="right")
    t.add_column("balance after", justify="right")
    for i, e in enumerate(events):
        t.add_row(str(total - offset - i), when(e.occurred_at), e.type, describe(e), signed(e.amount_ucr),
                  format_credits(e.balance_after_ucr))
    return t


def _rate_text(card: RateCard, slug: str) -> str:
    op = card.operations[slug]
    parts = [f"{r.credits} per {r.per:,} {dim}" if r.per != 1 else f"{r.credits} per {dim.rstrip('s')}"
             for dim, r in sorted(op.rates.items())]
    return "; ".join(parts)


def rates_tables(card: RateCard, *, current: bool) -> list[Table]:
    """The operations, packs and plans of one rate-card version."""
    label = "current" if current else "stored"
    ops = Table(title=f"rate card {card.version} ({label}): operations, in credits", box=box.SIMPLE_HEAD)
    for name in ("slug", "kind", "rates", "minimum", "description"):
        ops.add_column(name, justify="right" if name == "minimum" else "left")
    for slug, op in sorted(card.operations.items(), key=lambda kv: (kv[1].kind, kv[0])):
        ops.add_row(slug, op.kind, _rate_text(card, slug), str(op.minimum) if op.minimum else "-", op.description)

    packs = Table(title="credit packs", box=box.SIMPLE_HEAD)
    for name in ("pack", "credits", "bonus", "price"):
        packs.add_column(name, justify="left" if name == "pack" else "right")
    for pack in sorted(card.packs.values(), key=lambda p: p.price_cents):
        packs.add_row(pack.id, str(pack.credits), str(pack.bonus), money(pack.price_cents, card.currency))

    plans = Table(title="plans", box=box.SIMPLE_HEAD)
    for name in ("plan", "price / month", "monthly credits", "signup credits", "rate limit / min",
                 "concurrent runs"):
        plans.add_column(name, justify="left" if name == "plan" else "right")
    for plan in sorted(card.plans.values(), key=lambda p: p.price_cents):
        signup = str(plan.signup_credits)
        if plan.signup_credits and plan.signup_credits_expire_days:
            signup += f" ({plan.signup_credits_expire_days} d)"
        plans.add_row(plan.id + (" (default)" if plan.id == card.default_plan else ""),
                      money(plan.price_cents, card.currency), str(plan.monthly_credits), signup,
                      str(plan.rate_limit_per_minute), str(plan.concurrent_runs))
    return [ops, packs, plans]


def money(cents: int, currency: str) -> str:
    """A price in cents as ``12.34 USD`` (integer arithmetic, no floats)."""
    return f"{format_cents(cents)} {currency}"


def versions_table(versions: Sequence[tuple[str, str]]) -> Table:
    """Every stored rate-card version, oldest first; the last one prices new usage."""
    t = Table(title="rate card versions", box=box.SIMPLE_HEAD)
    t.add_column("#", justify="right")
    t.add_column("version")
    t.add_column("loaded at (UTC)")
    t.add_column("")
    for i, (version, loaded_at) in enumerate(versions, start=1):
        loaded = when(datetime.fromisoformat(loaded_at))
        t.add_row(str(i), version, loaded, "current" if i == len(versions) else "")
    return t


def balances_table(title: str, rows: Sequence[tuple[str, Balance]]) -> Table:
    """Several accounts side by side: one column per account."""
    t = Table(title=title, box=box.SIMPLE_HEAD)
    t.add_column("")
    for label, b in rows:
        t.add_column(f"{label}\n{b.account_id}", justify="right")

    def row(name: str, values: Sequence[str]) -> None:
        t.add_row(name, *values)

    bs = [b for _, b in rows]
    row("plan", [b.plan for b in bs])
    row("status", [b.status for b in bs])
    row("balance", [format_credits(b.balance_ucr) for b in bs])
    row("available", [format_credits(b.available_ucr) for b in bs])
    row("reserved", [format_credits(b.reserved_ucr) for b in bs])
    row("debt", [format_credits(b.debt_ucr) for b in bs])
    for source in SOURCES:
        row(f"  {source}", [format_credits(b.by_source.get(source, 0)) for b in bs])
    row("monthly allowance", [format_credits(b.monthly_allowance_ucr) for b in bs])
    row("resets at", [when(b.resets_at) for b in bs])
    row("events", [str(b.version) for b in bs])
    return t
