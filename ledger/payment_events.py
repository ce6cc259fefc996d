"""The events of money paid in through Stripe beyond the purchase itself: disputes, auto-refill
and the subscription paying the plan. Members of ``ledger.events.Event``; import from there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from ledger.event_base import EventBase


class PurchaseDisputed(EventBase):
    """A purchase's payment was disputed: what was left of its grant is frozen (``amount_ucr`` is
    ``-frozen_ucr``) and held on the purchase until the dispute closes."""

    type: Literal["PurchaseDisputed"] = "PurchaseDisputed"
    #: The purchase's ledger entry id (its ``CreditsPurchased`` event's id).
    purchase_id: UUID
    grant_id: UUID
    dispute_id: str
    reason: str
    frozen_ucr: int


class DisputeClosed(EventBase):
    """A dispute closed: ``won`` gives the frozen credits back to the purchase's grant
    (``amount_ucr = restored_ucr``), ``lost`` keeps them gone (``restored_ucr`` 0)."""

    type: Literal["DisputeClosed"] = "DisputeClosed"
    purchase_id: UUID
    grant_id: UUID
    dispute_id: str
    outcome: Literal["won", "lost"]
    restored_ucr: int


class AutoRefillConfigured(EventBase):
    """The auto-refill rule: below ``threshold_ucr``, buy ``refill_ucr`` for ``cents`` (the card's
    custom-amount price), at most ``daily_cap_ucr`` a UTC day; ``runout_hours``: also when the
    forecast says the balance runs out that soon. (``amount_ucr`` is the envelope's: 0.)"""

    type: Literal["AutoRefillConfigured"] = "AutoRefillConfigured"
    enabled: bool
    threshold_ucr: int
    refill_ucr: int
    cents: int
    daily_cap_ucr: int | None = None
    runout_hours: int | None = None


class PaymentMethodSaved(EventBase):
    """A payment method for off-session payments; a new one closes the refill breaker."""

    type: Literal["PaymentMethodSaved"] = "PaymentMethodSaved"
    stripe_customer: str
    payment_method: str


class AutoRefillRequested(EventBase):
    """One refill asked of the saved payment method (no money moves until it is paid)."""

    type: Literal["AutoRefillRequested"] = "AutoRefillRequested"
    crossing: int
    credits_ucr: int
    cents: int
    trigger: Literal["threshold", "runout", "unpaid_hour"]
    stripe_customer: str
    payment_method: str


class AutoRefillFailed(EventBase):
    """The refill of ``crossing`` was not paid; ``failures`` in a row so far."""

    type: Literal["AutoRefillFailed"] = "AutoRefillFailed"
    crossing: int
    payment_intent: str | None = None
    reason: str
    decline_code: str | None = None
    failures: int


class SubscriptionChanged(EventBase):
    """The Stripe subscription paying the plan was created, changed or ended (Stripe's ``status``)."""

    type: Literal["SubscriptionChanged"] = "SubscriptionChanged"
    stripe_subscription: str
    plan: str
    status: str
    current_period_end: datetime | None = None
    cancel_at_period_end: bool = False
