"""Commands: what a caller asks of one account. Frozen and strict (amounts are integers, never floats).

Every command may carry an ``idempotency_key`` (its rules: ``ledger.idempotency``).
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from ledger.events import Attribution, GrantSource, no_nul

# MAX_KEY and as_normal_key are re-exported for the schemas that spell keys as commands do.
from ledger.idempotency import MAX_KEY as MAX_KEY
from ledger.idempotency import as_normal_key as as_normal_key
from ledger.idempotency import fingerprint
from ledger.money import MAX_UCR


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    account_id: str = Field(min_length=1, max_length=200)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=MAX_KEY)

    _no_nul = field_validator("*", mode="before")(no_nul)
    _normal_key = field_validator("idempotency_key", mode="before")(as_normal_key)

    def fingerprint(self) -> bytes:
        """What a replay must match (``ledger.idempotency.fingerprint``)."""
        return fingerprint(self)


PositiveUcr = Field(gt=0, le=MAX_UCR)


class OpenAccount(Command):
    name: str = Field(min_length=1, max_length=200)
    plan: str | None = None


class ChangePlan(Command):
    plan: str


class GrantCredits(Command):
    """An operator grant (promotion, refund, ...) with an optional expiry."""

    amount_ucr: int = PositiveUcr
    source: GrantSource = "promotion"
    expires_at: AwareDatetime | None = None
    reason: str = Field(min_length=1, max_length=500)


class RedeemCoupon(Command):
    code: str = Field(min_length=1, max_length=100)


class _Usage(Command):
    operation: str = Field(min_length=1, max_length=100)
    quantity: int | None = None
    quantities: dict[str, int] | None = None
    attribution: Attribution = Attribution()


class Charge(_Usage):
    """Gated: refused with ``PaymentRequired`` when the account may not spend the cost."""


class Meter(_Usage):
    """Usage that already happened: never refused for lack of credits; may create debt."""

    #: When the usage happened (with a UTC offset); default: when it is recorded.
    occurred_at: AwareDatetime | None = None


class Reserve(Command):
    operation: str = Field(min_length=1, max_length=100)
    quantity: int | None = None
    quantities: dict[str, int] | None = None
    amount_ucr: int | None = Field(default=None, gt=0, le=MAX_UCR)
    ttl_s: int = Field(default=3600, gt=0, le=30 * 24 * 3600)
    #: Checked against agent and member limits when the credits are held.
    attribution: Attribution = Attribution()


class Settle(Command):
    reservation_id: UUID
    quantity: int | None = None
    quantities: dict[str, int] | None = None
    attribution: Attribution = Attribution()


class Release(Command):
    reservation_id: UUID


class ExpireReservations(Command):
    """Release every held reservation whose time is up."""


class RecordPurchase(Command):
    """A payment that succeeded; Stripe ids come from the caller.

    A pack must be paid its price; a custom amount is credited by the card's custom-amount rule.
    """

    kind: Literal["pack", "custom", "subscription", "auto_refill"]
    pack_id: str | None = None
    cents_paid: int = Field(ge=0, le=10**12)
    #: Needed for subscription renewals and auto-refills; packs and custom amounts are priced by the card.
    credits_ucr: int | None = Field(default=None, gt=0, le=MAX_UCR)
    stripe_payment_intent: str | None = None
    stripe_checkout_session: str | None = None
    stripe_event_id: str | None = None
    #: Stripe's charge, customer and invoice; the customer's receipt and invoice PDF where Stripe gives them.
    stripe_charge: str | None = Field(default=None, max_length=255)
    stripe_customer: str | None = Field(default=None, max_length=255)
    stripe_invoice: str | None = Field(default=None, max_length=255)
    receipt_url: str | None = Field(default=None, max_length=2000)
    invoice_pdf: str | None = Field(default=None, max_length=2000)
    #: An auto-refill's: the crossing of the pending request it pays (its credits and price).
    crossing: int | None = Field(default=None, ge=1)

    def fingerprint(self) -> bytes:
        # The last six came later: unset, they leave the fingerprint of keys stored before them.
        return fingerprint(self, ("stripe_charge", "stripe_customer", "stripe_invoice", "receipt_url",
                                 "invoice_pdf", "crossing"))


class IssueRefund(Command):
    """``credit`` gives credits back; ``clawback`` takes back from a refunded purchase (capped).

    ``purchase_id`` is the purchase's ledger entry id (its ``CreditsPurchased`` event). A clawback
    outside the rate card's refund window is refused unless an operator sets ``force``.
    """

    direction: Literal["credit", "clawback"]
    purchase_id: UUID | None = None
    amount_ucr: int | None = Field(default=None, gt=0, le=MAX_UCR)
    reason: str = Field(min_length=1, max_length=500)
    force: bool = False


class RecordDispute(Command):
    """The payment of purchase ``purchase_id`` (its ledger entry id) is disputed: what is left of it
    is frozen. Recording the same ``dispute_id`` again changes nothing."""

    purchase_id: UUID
    dispute_id: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=500)


class CloseDispute(Command):
    """A recorded dispute closed: ``won`` unfreezes the credits, ``lost`` keeps them gone."""

    purchase_id: UUID
    dispute_id: str = Field(min_length=1, max_length=200)
    outcome: Literal["won", "lost"]


class ConfigureAutoRefill(Command):
    """Below ``threshold_ucr``, buy ``amount_ucr`` (priced by the card's custom-amount rule)."""

    enabled: bool
    threshold_ucr: int = Field(ge=0, le=MAX_UCR)
    amount_ucr: int = PositiveUcr
    daily_cap_ucr: int | None = Field(default=None, gt=0, le=MAX_UCR)
    #: Also refill when the burn-rate forecast says the balance runs out within this many hours.
    runout_hours: int | None = Field(default=None, gt=0, le=24 * 90)


class SavePaymentMethod(Command):
    """The payment method refills charge off-session; a new one closes the refill breaker."""

    stripe_customer: str = Field(min_length=1, max_length=255)
    payment_method: str = Field(min_length=1, max_length=255)


class RequestAutoRefill(Command):
    """Ask one refill for ``crossing``: the version of the event that took the balance below the
    threshold (``ledger.refill.crossings``), or for a ``runout`` trigger the version the forecast
    read, or for ``unpaid_hour`` the version a deployment hour found too little to pay (whatever the
    threshold: the hour tries one refill before it pauses). Refused (``AutoRefillRefused``,
    nothing recorded) unless a refill is due."""

    crossing: int = Field(ge=1)
    trigger: Literal["threshold", "runout", "unpaid_hour"] = "threshold"


class RecordAutoRefillFailure(Command):
    """The refill of ``crossing`` was declined or failed."""

    crossing: int = Field(ge=1)
    payment_intent: str | None = Field(default=None, max_length=255)
    reason: str = Field(min_length=1, max_length=500)
    decline_code: str | None = Field(default=None, max_length=100)


class RecordSubscription(Command):
    """What Stripe says of the subscription paying the plan. An ended one (``canceled``,
    ``incomplete_expired``) puts the account back on the card's default plan; the paid plan's
    allowance comes with each paid invoice (``GrantPlanAllowance``)."""

    stripe_subscription: str = Field(min_length=1, max_length=255)
    plan: str = Field(min_length=1, max_length=100)
    status: Literal["incomplete", "incomplete_expired", "trialing", "active", "past_due", "canceled", "unpaid",
                    "paused"]
    current_period_end: AwareDatetime | None = None
    cancel_at_period_end: bool = False


class GrantPlanAllowance(Command):
    """A paid invoice of the plan's subscription: the allowance of ``period_start..period_end``
    (the live allowance expires: no rollover; purchased credits are untouched). Once per invoice."""

    invoice_id: str = Field(min_length=1, max_length=255)
    plan: str = Field(min_length=1, max_length=100)
    period_start: AwareDatetime
    period_end: AwareDatetime
    stripe_subscription: str = Field(min_length=1, max_length=255)
    #: What the invoice was paid (its currency's smallest unit) and its PDF, for ``GET .../invoices``.
    cents_paid: int | None = Field(default=None, ge=0, le=10**12)
    invoice_pdf: str | None = Field(default=None, max_length=2000)


class GrantAllowance(Command):
    """The plan's monthly credits for billing cycle ``cycle`` (0 = the month the account opened)."""

    cycle: int = Field(ge=0)


class ExpireGrants(Command):
    """Expire every grant whose time is up."""


class StartDeployment(Command):
    deployment_id: str = Field(min_length=1, max_length=200)
    instance_type: str = Field(min_length=1, max_length=100)


class ChargeDeploymentHour(Command):
    deployment_id: str = Field(min_length=1, max_length=200)
    hour_index: int = Field(ge=0)
    #: When the hour cannot be paid: pause the deployment (True) or raise PaymentRequired.
    pause_if_unpaid: bool = True


class StopDeployment(Command):
    deployment_id: str


class PauseDeployment(Command):
    deployment_id: str
    reason: str = "paused_by_user"


class ResumeDeployment(Command):
    deployment_id: str


class SetBudget(Command):
    monthly_limit_ucr: int | None = Field(default=None, gt=0, le=MAX_UCR)
    warn_pct: int = Field(default=80, gt=0, le=100)
    critical_pct: int = Field(default=95, gt=0, le=100)
    hard_stop: bool = False


class SetLimit(Command):
    scope: Literal["agent", "member"]
    subject: str = Field(min_length=1, max_length=200)
    per_run_ucr: int | None = Field(default=None, gt=0, le=MAX_UCR)
    per_day_ucr: int | None = Field(default=None, gt=0, le=MAX_UCR)
    per_month_ucr: int | None = Field(default=None, gt=0, le=MAX_UCR)


class CreateApiKey(Command):
    """Issue an account key; the caller made the secret and passes only its hash."""

    key_id: str = Field(min_length=8, max_length=64, pattern=r"^[a-z0-9]+$")
    prefix: str = Field(min_length=1, max_length=100)
    role: Literal["admin", "member", "read"]
    name: str = Field(min_length=1, max_length=200)
    secret_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class RevokeApiKey(Command):
    key_id: str = Field(min_length=1, max_length=64)


class CheckAlerts(Command):
    """Not executed: names what a snapshot for alert checks must load (limits, counters of ``attribution``)."""

    attribution: Attribution = Attribution()


class RaiseAlert(Command):
    """Raise one alert if its condition holds now; keyed by the alert's name so it fires once."""

    kind: Literal["budget", "agent_limit", "member_limit", "low_balance", "deployment_cost", "daily_summary",
                  "weekly_summary"]
    scope: str = Field(max_length=20)
    subject: str = Field(max_length=200)
    period: str = Field(max_length=220)
    threshold_pct: int = Field(ge=0, le=100)
    #: Summaries only: what was spent in the (closed) period.
    spent_ucr: int | None = Field(default=None, ge=0, le=MAX_UCR)


class NotifyPaymentProblem(Command):
    """A payment that credited nothing and needs a person (a failed bank debit, a session paid
    another amount than it sold): an alert the account sees and its webhooks deliver. ``reference``
    names the Stripe object, so each problem is told once."""

    reason: str = Field(min_length=1, max_length=100)
    reference: str = Field(min_length=1, max_length=255)
    message: str = Field(min_length=1, max_length=1000)


class PauseForDebt(Command):
    """Pause every running deployment while the account is in debt (metered usage outran its credits)."""


AnyCommand = (
    OpenAccount | ChangePlan | GrantCredits | RedeemCoupon | Charge | Meter | Reserve | Settle
    | Release | ExpireReservations | RecordPurchase | IssueRefund | GrantAllowance | ExpireGrants
    | StartDeployment | ChargeDeploymentHour | StopDeployment | PauseDeployment | ResumeDeployment
    | SetBudget | SetLimit | CreateApiKey | RevokeApiKey | RaiseAlert | PauseForDebt | RecordDispute
    | CloseDispute | ConfigureAutoRefill | SavePaymentMethod | RequestAutoRefill | RecordAutoRefillFailure
    | RecordSubscription | GrantPlanAllowance | NotifyPaymentProblem
)
