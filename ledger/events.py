"""The events: frozen, past-tense facts about one account, as one discriminated union.

Every event carries ``amount_ucr`` (signed: + adds credits, - burns them, 0 when no money
moves) and ``balance_after_ucr`` (known under the account's lock), so the ledger reads straight
from the stream. Schema changes are additive, or go through an upcaster keyed on
``schema_version`` (see ``upcast``). The envelope is ``ledger.event_base``'s, the payment events
beyond the purchase ``ledger.payment_events``'; both are re-exported here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field, TypeAdapter

from ledger.event_base import FLOW_ALIASES as FLOW_ALIASES
from ledger.event_base import Attribution as Attribution
from ledger.event_base import Draw as Draw
from ledger.event_base import EventBase as EventBase
from ledger.event_base import GrantSource as GrantSource
from ledger.event_base import no_nul as no_nul
from ledger.payment_events import AutoRefillConfigured as AutoRefillConfigured
from ledger.payment_events import AutoRefillFailed as AutoRefillFailed
from ledger.payment_events import AutoRefillRequested as AutoRefillRequested
from ledger.payment_events import DisputeClosed as DisputeClosed
from ledger.payment_events import PaymentMethodSaved as PaymentMethodSaved
from ledger.payment_events import PurchaseDisputed as PurchaseDisputed
from ledger.payment_events import SubscriptionChanged as SubscriptionChanged


class AccountOpened(EventBase):
    type: Literal["AccountOpened"] = "AccountOpened"
    name: str
    plan: str


class PlanChanged(EventBase):
    type: Literal["PlanChanged"] = "PlanChanged"
    old_plan: str
    new_plan: str


class AllowanceGranted(EventBase):
    """The plan's monthly credits for one cycle; they expire at the cycle's end."""

    type: Literal["AllowanceGranted"] = "AllowanceGranted"
    grant_id: UUID
    plan: str
    cycle: int
    expires_at: datetime
    #: A plan paid through Stripe: the paid invoice this allowance is for, and its subscription.
    stripe_invoice: str | None = None
    stripe_subscription: str | None = None
    #: That invoice's amount paid (cents) and its PDF, when Stripe gave them.
    cents_paid: int | None = None
    invoice_pdf: str | None = None


class CreditsGranted(EventBase):
    """An operator grant or signup credits."""

    type: Literal["CreditsGranted"] = "CreditsGranted"
    grant_id: UUID
    source: GrantSource
    expires_at: datetime | None = None
    reason: str


class CouponApplied(EventBase):
    type: Literal["CouponApplied"] = "CouponApplied"
    grant_id: UUID
    code: str
    expires_at: datetime | None = None


class CreditsPurchased(EventBase):
    """A pack, custom amount, subscription renewal or auto-refill was paid."""

    type: Literal["CreditsPurchased"] = "CreditsPurchased"
    grant_id: UUID
    kind: Literal["pack", "custom", "subscription", "auto_refill"]
    pack_id: str | None = None
    cents_paid: int
    credits_ucr: int
    bonus_ucr: int
    stripe_payment_intent: str | None = None
    stripe_checkout_session: str | None = None
    stripe_event_id: str | None = None
    stripe_charge: str | None = None
    stripe_customer: str | None = None
    stripe_invoice: str | None = None
    receipt_url: str | None = None
    invoice_pdf: str | None = None
    #: An auto-refill's: the crossing its request answered (``AutoRefillRequested.crossing``).
    crossing: int | None = None


class UsageMetered(EventBase):
    """Usage that happened and what it cost: priced, drawn from grants, the rest as debt."""

    type: Literal["UsageMetered"] = "UsageMetered"
    operation: str
    quantities: dict[str, int]
    attribution: Attribution = Attribution()
    cost_ucr: int
    exact_cost: str
    rate_card_version: str
    gated: bool
    draws: tuple[Draw, ...] = ()
    debt_added_ucr: int = 0
    reservation_id: UUID | None = None
    deployment_id: str | None = None
    hour_index: int | None = None


class RefundIssued(EventBase):
    """Credits given back (a new refund grant) or taken back from a refunded purchase.

    A clawback takes at most what is left of the purchase's grant: ``capped`` says it took less
    than ``requested_ucr``. ``forced``: an operator refunded after the rate card's window closed.
    """

    type: Literal["RefundIssued"] = "RefundIssued"
    direction: Literal["credit", "clawback"]
    grant_id: UUID
    #: The purchase's ledger entry id (the ``CreditsPurchased`` event's id).
    purchase_id: UUID | None = None
    requested_ucr: int
    capped: bool = False
    forced: bool = False
    reason: str


class DebtSettled(EventBase):
    """New credits paid off debt; moves money from grants to the debt, the balance is unchanged."""

    type: Literal["DebtSettled"] = "DebtSettled"
    settled_ucr: int
    draws: tuple[Draw, ...]


class GrantExpired(EventBase):
    type: Literal["GrantExpired"] = "GrantExpired"
    grant_id: UUID
    source: GrantSource
    expired_ucr: int


class CreditsReserved(EventBase):
    type: Literal["CreditsReserved"] = "CreditsReserved"
    reservation_id: UUID
    operation: str
    held_ucr: int
    expires_at: datetime


class CreditsReleased(EventBase):
    type: Literal["CreditsReleased"] = "CreditsReleased"
    reservation_id: UUID
    released_ucr: int
    reason: Literal["settled", "released", "expired"]


class DeploymentStarted(EventBase):
    type: Literal["DeploymentStarted"] = "DeploymentStarted"
    deployment_id: str
    instance_type: str
    hourly_ucr: int


class DeploymentStopped(EventBase):
    type: Literal["DeploymentStopped"] = "DeploymentStopped"
    deployment_id: str


class DeploymentPaused(EventBase):
    type: Literal["DeploymentPaused"] = "DeploymentPaused"
    deployment_id: str
    reason: str


class DeploymentResumed(EventBase):
    type: Literal["DeploymentResumed"] = "DeploymentResumed"
    deployment_id: str


class BudgetSet(EventBase):
    type: Literal["BudgetSet"] = "BudgetSet"
    monthly_limit_ucr: int | None
    warn_pct: int
    critical_pct: int
    hard_stop: bool


class LimitSet(EventBase):
    type: Literal["LimitSet"] = "LimitSet"
    scope: Literal["agent", "member"]
    subject: str
    per_run_ucr: int | None
    per_day_ucr: int | None
    per_month_ucr: int | None


ApiKeyRole = Literal["admin", "member", "read"]


class ApiKeyCreated(EventBase):
    """An account key was issued (its secret is never recorded, only shown once)."""

    type: Literal["ApiKeyCreated"] = "ApiKeyCreated"
    key_id: str
    prefix: str
    role: ApiKeyRole
    name: str


class ApiKeyRevoked(EventBase):
    type: Literal["ApiKeyRevoked"] = "ApiKeyRevoked"
    key_id: str


class AlertRaised(EventBase):
    """A budget, limit or balance threshold was crossed (once per period and threshold), or a summary."""

    type: Literal["AlertRaised"] = "AlertRaised"
    kind: str
    scope: str
    subject: str
    period: str
    threshold_pct: int
    level: Literal["info", "warning", "critical"]
    message: str
    spent_ucr: int
    limit_ucr: int


Event = Annotated[
    AccountOpened
    | PlanChanged
    | AllowanceGranted
    | CreditsGranted
    | CouponApplied
    | CreditsPurchased
    | UsageMetered
    | RefundIssued
    | DebtSettled
    | GrantExpired
    | CreditsReserved
    | CreditsReleased
    | DeploymentStarted
    | DeploymentStopped
    | DeploymentPaused
    | DeploymentResumed
    | BudgetSet
    | LimitSet
    | ApiKeyCreated
    | ApiKeyRevoked
    | AlertRaised
    | PurchaseDisputed
    | DisputeClosed
    | AutoRefillConfigured
    | PaymentMethodSaved
    | AutoRefillRequested
    | AutoRefillFailed
    | SubscriptionChanged,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

#: Fields stored in their own columns rather than inside ``data``.
ENVELOPE_FIELDS: set[str] = set(
    {"event_id", "account_id", "occurred_at", "recorded_at", "idempotency_key", "amount_ucr",
     "balance_after_ucr", "schema_version", "type"}
)


def event_data(event: EventBase) -> dict[str, Any]:
    """The event's own fields as JSON-ready data (the ``data`` column)."""
    return event.model_dump(mode="json", exclude=ENVELOPE_FIELDS)


def upcast(type_: str, schema_version: int, data: dict[str, Any]) -> dict[str, Any]:
    """Bring stored data of an older ``schema_version`` up to the current shape.

    Every event type is at version 1 today, so this is the identity; a future change adds a
    step here keyed on ``(type_, schema_version)`` instead of rewriting stored rows.
    """
    return data


def event_from_row(
    *,
    type_: str,
    schema_version: int,
    data: dict[str, Any],
    envelope: dict[str, Any],
) -> Event:
    """Rebuild an event from its stored envelope columns and ``data``."""
    return EVENT_ADAPTER.validate_python(
        {**upcast(type_, schema_version, data), **envelope, "type": type_}
    )
