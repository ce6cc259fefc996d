"""What an account's state holds about money paid in through Stripe: disputes of purchases,
auto-refill (its rule, payment method, breaker and last request) and the plan's subscription.

Plain frozen values, folded by ``ledger.state.apply`` and stored by ``ledger.rows``. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal
from uuid import UUID

from ledger.clock import day_key
from ledger.events import (
    AllowanceGranted,
    AutoRefillConfigured,
    AutoRefillFailed,
    AutoRefillRequested,
    CreditsPurchased,
    PaymentMethodSaved,
    SubscriptionChanged,
)

DisputeStatus = Literal["open", "won", "lost"]


@dataclass(frozen=True, slots=True)
class Dispute:
    """A purchase's dispute: ``frozen_ucr`` was taken off its grant when it opened; ``restored_ucr``
    went back when it was won (0 while open or when lost)."""

    dispute_id: str
    status: DisputeStatus
    frozen_ucr: int
    restored_ucr: int
    opened_at: datetime
    closed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Purchase:
    """A ``CreditsPurchased`` entry a refund or a dispute names: ``purchase_id`` is its ledger entry id."""

    purchase_id: UUID
    grant_id: UUID
    purchased_at: datetime
    #: Its dispute, if its payment was ever disputed (one per purchase, as one per Stripe charge).
    dispute: Dispute | None = None


RefillTrigger = Literal["threshold", "runout", "unpaid_hour"]
RefillStatus = Literal["pending", "paid", "failed"]

#: Failures in a row that stop auto-refills until the payment method changes.
REFILL_BREAKER = 3


@dataclass(frozen=True, slots=True)
class RefillRequest:
    """One auto-refill asked of the payment method: at most one per crossing, one pending at a time."""

    crossing: int
    credits_ucr: int
    cents: int
    trigger: RefillTrigger
    requested_at: datetime
    status: RefillStatus = "pending"


@dataclass(frozen=True, slots=True)
class AutoRefill:
    """An account's auto-refill: its rule, its payment method, its breaker and its last request.

    ``cents`` is the price of one refill of ``amount_ucr`` (the card's custom-amount rule, when it
    was configured). ``day``/``requested_today_ucr``: what was requested on that UTC day, for the cap.
    """

    enabled: bool = False
    threshold_ucr: int = 0
    amount_ucr: int = 0
    cents: int = 0
    daily_cap_ucr: int | None = None
    runout_hours: int | None = None
    stripe_customer: str | None = None
    payment_method: str | None = None
    #: Failed refills in a row (reset by a paid one or a new payment method).
    failures: int = 0
    last: RefillRequest | None = None
    day: str = ""
    requested_today_ucr: int = 0

    @property
    def pending(self) -> RefillRequest | None:
        return self.last if self.last is not None and self.last.status == "pending" else None

    @property
    def breaker_open(self) -> bool:
        return self.failures >= REFILL_BREAKER

    def requested_on(self, day: str) -> int:
        """What was requested on UTC day ``day`` (a ``ledger.clock.day_key``)."""
        return self.requested_today_ucr if self.day == day else 0


#: An auto-refill never configured: one shared instance (it is frozen) that every account without
#: one holds, so loading such an account builds nothing and the settings' cache finds it by identity.
NO_AUTO_REFILL = AutoRefill()


#: Stripe subscription statuses after which it never bills again: the plan's allowance comes
#: from the calendar again (the scheduler's monthly job).
ENDED = frozenset({"canceled", "incomplete_expired"})


@dataclass(frozen=True, slots=True)
class Subscription:
    """The Stripe subscription that pays the account's plan: each paid invoice grants the plan's
    allowance for its period (``last_invoice``), instead of the calendar's monthly job."""

    stripe_subscription: str
    plan: str
    status: str
    current_period_end: datetime | None = None
    cancel_at_period_end: bool = False
    last_invoice: str | None = None

    @property
    def live(self) -> bool:
        """Whether it still bills (and so grants the allowance)."""
        return self.status not in ENDED


@dataclass(frozen=True, slots=True)
class Payments:
    """What an account's state holds about money paid in: its purchases (those loaded for a batch,
    and those it records), its auto-refill and its subscription. One field of ``AccountState``, so
    the states a charge builds (a charge changes none of it) copy it as one."""

    purchases: Mapping[UUID, Purchase] = field(default_factory=dict)
    auto_refill: AutoRefill = NO_AUTO_REFILL
    #: The Stripe subscription paying the plan, if one ever did.
    subscription: Subscription | None = None


#: No purchase loaded, no auto-refill, no subscription: shared (it is frozen, its mapping never
#: changed in place) by every state built without them.
NO_PAYMENTS = Payments()


def refill_after(r: AutoRefill, e: AutoRefillConfigured | PaymentMethodSaved | AutoRefillRequested
                 | AutoRefillFailed | CreditsPurchased) -> AutoRefill:
    """The auto-refill after ``e`` (``ledger.state.apply``'s part for it)."""
    match e:
        case AutoRefillConfigured():
            return replace(r, enabled=e.enabled, threshold_ucr=e.threshold_ucr, amount_ucr=e.refill_ucr,
                           cents=e.cents, daily_cap_ucr=e.daily_cap_ucr, runout_hours=e.runout_hours)
        case PaymentMethodSaved():
            return replace(r, stripe_customer=e.stripe_customer, payment_method=e.payment_method, failures=0)
        case AutoRefillRequested():
            day = day_key(e.occurred_at)
            return replace(r, last=RefillRequest(e.crossing, e.credits_ucr, e.cents, e.trigger, e.occurred_at),
                           day=day, requested_today_ucr=r.requested_on(day) + e.credits_ucr)
    if r.last is None or r.last.crossing != e.crossing:
        if isinstance(e, CreditsPurchased):
            return r  # a refill recorded before requests were: nothing pending to close
        raise ValueError(f"no refill was requested for crossing {e.crossing}")
    if isinstance(e, AutoRefillFailed):
        return replace(r, failures=e.failures, last=replace(r.last, status="failed"))
    return replace(r, failures=0, last=replace(r.last, status="paid"))


def subscription_after(sub: Subscription | None, e: SubscriptionChanged | AllowanceGranted) -> Subscription:
    """The subscription after ``e``: what Stripe said of it, or an invoice of it paid (which makes
    it active, whatever came first from Stripe)."""
    same = sub is not None and sub.stripe_subscription == e.stripe_subscription
    if isinstance(e, SubscriptionChanged):
        return Subscription(e.stripe_subscription, e.plan, e.status, e.current_period_end, e.cancel_at_period_end,
                            sub.last_invoice if sub is not None and same else None)
    if sub is None or not same or e.stripe_subscription is None:
        return Subscription(e.stripe_subscription or "", e.plan, "active", e.expires_at, False, e.stripe_invoice)
    return replace(sub, plan=e.plan, last_invoice=e.stripe_invoice)
