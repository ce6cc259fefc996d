"""An account's state and ``apply``: how each event changes it. Pure, no I/O.

The same fold serves the write side (inline state updated in the append's transaction) and
``verify`` (every account re-derived from its events and compared with the stored state).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from ledger.clock import day_key, month_key
from ledger.deployment import Deployment as Deployment
from ledger.deployment import hour_due_at as hour_due_at
from ledger.deployment import hours_due as hours_due
from ledger.events import (
    AccountOpened,
    AllowanceGranted,
    Attribution,
    AutoRefillConfigured,
    AutoRefillFailed,
    AutoRefillRequested,
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
    DisputeClosed,
    Draw,
    Event,
    GrantExpired,
    LimitSet,
    PaymentMethodSaved,
    PlanChanged,
    PurchaseDisputed,
    RefundIssued,
    SubscriptionChanged,
    UsageMetered,
)
from ledger.grants import Grant
from ledger.money import MAX_UCR
from ledger.payments import NO_PAYMENTS, AutoRefill, Dispute, Payments, Subscription, refill_after, subscription_after
from ledger.payments import Purchase as Purchase
from ledger.rates import coupon_code

CounterKey = tuple[str, str, str]  # (scope, subject, period)
LimitKey = tuple[str, str]  # (scope, subject)


@dataclass(frozen=True, slots=True)
class Budget:
    monthly_limit_ucr: int | None = None
    warn_pct: int = 80
    critical_pct: int = 95
    hard_stop: bool = False


@dataclass(frozen=True, slots=True)
class Limit:
    per_run_ucr: int | None = None
    per_day_ucr: int | None = None
    per_month_ucr: int | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: UUID
    operation: str
    held_ucr: int
    status: str  # held | settled | released | expired
    expires_at: datetime
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AccountState:
    """What decisions about one account need. Collections hold only what was loaded for the batch."""

    account_id: str
    exists: bool = False
    name: str = ""
    plan: str = ""
    status: str = "active"
    version: int = 0
    last_hash: bytes = b""
    opened_at: datetime | None = None
    debt_ucr: int = 0
    reserved_ucr: int = 0
    allowance_cycle: int = -1
    budget: Budget = Budget()
    grants: Mapping[UUID, Grant] = field(default_factory=dict)
    limits: Mapping[LimitKey, Limit] = field(default_factory=dict)
    #: The spend counters a decision may read, or ``None`` when the store did not load them (most
    #: debits never need them: see ``spent_ucr``). Reading one then raises ``CountersNotLoaded``.
    counters: Mapping[CounterKey, int] | None = field(default_factory=dict)
    #: Everything the account ever spent (every ``UsageMetered.cost_ucr``), held at ``MAX_UCR``.
    #: Each spend counter is a part of it, so it bounds them all without loading any.
    spent_ucr: int = 0
    reservations: Mapping[UUID, Reservation] = field(default_factory=dict)
    deployments: Mapping[str, Deployment] = field(default_factory=dict)
    #: Codes this account redeemed, as ``coupon_code`` compares them.
    coupons_redeemed: frozenset[str] = frozenset()
    payments: Payments = NO_PAYMENTS

    @property
    def purchases(self) -> Mapping[UUID, Purchase]:
        """Purchases by ledger entry id (those a batch's refunds name, and those it records)."""
        return self.payments.purchases

    @property
    def auto_refill(self) -> AutoRefill:
        return self.payments.auto_refill

    @property
    def subscription(self) -> Subscription | None:
        """The Stripe subscription paying the plan, if one ever did."""
        return self.payments.subscription

    @property
    def granted_ucr(self) -> int:
        return sum(g.remaining_ucr for g in self.grants.values())

    @property
    def balance_ucr(self) -> int:
        return self.granted_ucr - self.debt_ucr

    @property
    def available_ucr(self) -> int:
        return self.balance_ucr - self.reserved_ucr

    def counter(self, key: CounterKey) -> int:
        return self.loaded_counters().get(key, 0)

    def loaded_counters(self) -> Mapping[CounterKey, int]:
        if self.counters is None:
            raise CountersNotLoaded(self.account_id)
        return self.counters


class CountersNotLoaded(Exception):
    """A decision needs spend counters the store did not load: it loads them and decides again."""

    def __init__(self, account_id: str) -> None:
        super().__init__(account_id)
        self.account_id = account_id


def spend_keys(attribution: Attribution, when: datetime) -> tuple[CounterKey, ...]:
    """The spend counters a debit at ``when`` adds to: the account's month and day, and per agent/member.

    The account's day is what the run-out forecast reads: a handful of counter rows, where summing
    the usage events of the window would scan the account's whole history.
    """
    month, day = month_key(when), day_key(when)
    keys: list[CounterKey] = [("account", "", month), ("account", "", day)]
    for scope, subject in (("agent", attribution.agent), ("member", attribution.member)):
        if subject:
            keys += [(scope, subject, month), (scope, subject, day)]
            if attribution.run:
                keys.append((scope, subject, f"R{attribution.run}"))
    return tuple(keys)


def _status(debt_ucr: int, current: str) -> str:
    if current == "closed":
        return current
    return "in_debt" if debt_ucr > 0 else "active"


def _add_grant(s: AccountState, grant: Grant) -> AccountState:
    return replace(s, grants={**s.grants, grant.grant_id: grant})


def _add_to_grant(s: AccountState, grant_id: UUID, amount_ucr: int) -> AccountState:
    g = s.grants[grant_id]
    return _add_grant(s, replace(g, remaining_ucr=g.remaining_ucr + amount_ucr))


def _paid(s: AccountState, **changes: Any) -> AccountState:
    """``s`` with ``changes`` to its payments (purchases, auto-refill, subscription)."""
    return replace(s, payments=replace(s.payments, **changes))


def _draw(s: AccountState, draws: tuple[Draw, ...]) -> dict[UUID, Grant]:
    grants = dict(s.grants)
    for d in draws:
        g = grants[d.grant_id]
        # Built directly: this runs for every debit, and dataclasses.replace is several times slower.
        grants[d.grant_id] = Grant(g.grant_id, g.source, g.original_ucr, g.remaining_ucr - d.amount_ucr,
                                   g.expires_at, g.granted_at)
    return grants


def apply(s: AccountState, e: Event) -> AccountState:
    """The state after ``e``. Versions and hashes are the store's business, not the fold's."""
    # The most frequent event first: each case is an isinstance through pydantic's ABCMeta.
    match e:
        case UsageMetered():
            counters = s.counters
            if counters is not None:
                counters = dict(counters)
                for key in spend_keys(e.attribution, e.occurred_at):
                    counters[key] = counters.get(key, 0) + e.cost_ucr
            deployments = s.deployments
            if e.deployment_id is not None and e.hour_index is not None:
                d = s.deployments[e.deployment_id]
                deployments = {**deployments, d.deployment_id: replace(
                    d, hours_charged=d.hours_charged + 1, credits_ucr=d.credits_ucr + e.cost_ucr)}
            s = replace(s, grants=_draw(s, e.draws), debt_ucr=s.debt_ucr + e.debt_added_ucr,
                        counters=counters, spent_ucr=min(s.spent_ucr + e.cost_ucr, MAX_UCR),
                        deployments=deployments)
        case AccountOpened():
            s = replace(s, exists=True, name=e.name, plan=e.plan, status="active", opened_at=e.occurred_at)
        case PlanChanged():
            s = replace(s, plan=e.new_plan)
        case AllowanceGranted():
            s = _add_grant(s, Grant(e.grant_id, "allowance", e.amount_ucr, e.amount_ucr, e.expires_at, e.occurred_at))
            s = replace(s, allowance_cycle=max(s.allowance_cycle, e.cycle))
            if e.stripe_invoice is not None:
                s = _paid(s, subscription=subscription_after(s.subscription, e))
        case CreditsGranted():
            s = _add_grant(s, Grant(e.grant_id, e.source, e.amount_ucr, e.amount_ucr, e.expires_at, e.occurred_at))
        case CouponApplied():
            s = _add_grant(s, Grant(e.grant_id, "promotion", e.amount_ucr, e.amount_ucr, e.expires_at, e.occurred_at))
            s = replace(s, coupons_redeemed=s.coupons_redeemed | {coupon_code(e.code)})
        case CreditsPurchased():
            s = _add_grant(s, Grant(e.grant_id, "purchase", e.amount_ucr, e.amount_ucr, None, e.occurred_at))
            s = _paid(s, purchases={**s.purchases, e.event_id: Purchase(e.event_id, e.grant_id, e.occurred_at)})
            if e.crossing is not None:
                s = _paid(s, auto_refill=refill_after(s.auto_refill, e))
        case RefundIssued():
            if e.direction == "credit":
                s = _add_grant(s, Grant(e.grant_id, "refund", e.amount_ucr, e.amount_ucr, None, e.occurred_at))
            else:
                g = s.grants[e.grant_id]
                s = _add_grant(s, replace(g, remaining_ucr=g.remaining_ucr + e.amount_ucr))
        case PurchaseDisputed():
            s = _add_to_grant(s, e.grant_id, e.amount_ucr)
            p = s.purchases[e.purchase_id]
            s = _paid(s, purchases={**s.purchases, p.purchase_id: replace(
                p, dispute=Dispute(e.dispute_id, "open", e.frozen_ucr, 0, e.occurred_at))})
        case DisputeClosed():
            s = _add_to_grant(s, e.grant_id, e.amount_ucr)
            p = s.purchases[e.purchase_id]
            if p.dispute is None:  # only a tampered log closes a dispute never recorded (verify says so)
                raise ValueError(f"purchase {p.purchase_id} has no dispute to close")
            s = _paid(s, purchases={**s.purchases, p.purchase_id: replace(p, dispute=replace(
                p.dispute, status=e.outcome, restored_ucr=e.restored_ucr, closed_at=e.occurred_at))})
        case DebtSettled():
            s = replace(s, grants=_draw(s, e.draws), debt_ucr=s.debt_ucr - e.settled_ucr)
        case GrantExpired():
            g = s.grants[e.grant_id]
            s = _add_grant(s, replace(g, remaining_ucr=g.remaining_ucr - e.expired_ucr))
        case CreditsReserved():
            r = Reservation(e.reservation_id, e.operation, e.held_ucr, "held", e.expires_at, e.occurred_at)
            s = replace(s, reserved_ucr=s.reserved_ucr + e.held_ucr,
                        reservations={**s.reservations, r.reservation_id: r})
        case CreditsReleased():
            r = s.reservations[e.reservation_id]
            s = replace(s, reserved_ucr=s.reserved_ucr - r.held_ucr,
                        reservations={**s.reservations, r.reservation_id: replace(r, status=e.reason)})
        case DeploymentStarted():
            d = Deployment(e.deployment_id, e.instance_type, e.hourly_ucr, "running", 0, 0, e.occurred_at,
                           timedelta(0), None, e.occurred_at)
            s = replace(s, deployments={**s.deployments, d.deployment_id: d})
        case DeploymentStopped():
            # The clock stops: the running segment's time is added to what was used.
            d = s.deployments[e.deployment_id]
            s = replace(s, deployments={**s.deployments, d.deployment_id: replace(
                d, status="stopped", segment_started_at=None, used=d.used_at(e.occurred_at))})
        case DeploymentPaused():
            d = s.deployments[e.deployment_id]
            s = replace(s, deployments={**s.deployments, d.deployment_id: replace(
                d, status="paused", segment_started_at=None, used=d.used_at(e.occurred_at),
                paused_reason=e.reason)})
        case DeploymentResumed():
            d = s.deployments[e.deployment_id]
            s = replace(s, deployments={**s.deployments, d.deployment_id: replace(
                d, status="running", segment_started_at=e.occurred_at, paused_reason=None)})
        case AutoRefillConfigured() | PaymentMethodSaved() | AutoRefillRequested() | AutoRefillFailed():
            s = _paid(s, auto_refill=refill_after(s.auto_refill, e))
        case SubscriptionChanged():
            s = _paid(s, subscription=subscription_after(s.subscription, e))
        case BudgetSet():
            s = replace(s, budget=Budget(e.monthly_limit_ucr, e.warn_pct, e.critical_pct, e.hard_stop))
        case LimitSet():
            s = replace(s, limits={**s.limits, (e.scope, e.subject): Limit(
                e.per_run_ucr, e.per_day_ucr, e.per_month_ucr)})
        # ApiKeyCreated / ApiKeyRevoked move no money: the ``api_keys`` table is their state.
    status = _status(s.debt_ucr, s.status)
    return s if status == s.status else replace(s, status=status)
