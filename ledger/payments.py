"""What an account's state holds about money paid in through Stripe: disputes of purchases,
auto-refill (its rule, payment method, breaker and last request) and the plan's subscription.

Plain frozen values, folded by ``ledger.state.apply`` and stored by ``ledger.rows``. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

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


RefillTrigger = Literal["threshold", "runout"]
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
