"""Controls: the monthly budget, spend limits and auto-refill."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StrictBool, StrictInt

from ledger.api.schemas.base import Out, WriteBody, examples
from ledger.api.schemas.fields import CreditsText, Ucr, Url


class BudgetIn(WriteBody):
    model_config = examples(monthly_limit="5000", warn_pct=80, critical_pct=95, hard_stop=True)

    #: Null clears the budget.
    monthly_limit: CreditsText | None = None
    monthly_limit_ucr: Ucr | None = None
    warn_pct: Annotated[StrictInt, Field(gt=0, le=100)] = 80
    critical_pct: Annotated[StrictInt, Field(gt=0, le=100)] = 95
    hard_stop: StrictBool = False


class BudgetOut(Out):
    monthly_limit: str | None
    monthly_limit_ucr: int | None
    warn_pct: int
    critical_pct: int
    hard_stop: bool
    spent_this_month: str
    spent_this_month_ucr: int


class LimitIn(WriteBody):
    model_config = examples(per_run="200", per_day="2000", per_month="30000")

    per_run: CreditsText | None = None
    per_run_ucr: Ucr | None = None
    per_day: CreditsText | None = None
    per_day_ucr: Ucr | None = None
    per_month: CreditsText | None = None
    per_month_ucr: Ucr | None = None


class LimitOut(Out):
    scope: str
    key: str
    per_run: str | None
    per_run_ucr: int | None
    per_day: str | None
    per_day_ucr: int | None
    per_month: str | None
    per_month_ucr: int | None


class AutoRefillIn(WriteBody):
    model_config = examples(enabled=True, threshold="500", amount="2000", daily_cap="10000")

    enabled: StrictBool
    #: Refill when a debit takes the balance below this.
    threshold: CreditsText | None = None
    threshold_ucr: Ucr | None = None
    #: What one refill buys (priced by the rate card's custom-amount rule).
    amount: CreditsText | None = None
    amount_ucr: Ucr | None = None
    #: At most this much refilled per UTC day (null: no cap).
    daily_cap: CreditsText | None = None
    daily_cap_ucr: Ucr | None = None
    #: Also refill when the burn-rate forecast says the balance runs out within this many hours.
    runout_hours: Annotated[StrictInt, Field(gt=0, le=24 * 90)] | None = None


class RefillRequestOut(Out):
    crossing: int
    credits: str
    credits_ucr: int
    cents: int
    trigger: str
    status: str
    requested_at: datetime


class AutoRefillOut(Out):
    enabled: bool
    threshold: str
    threshold_ucr: int
    amount: str
    amount_ucr: int
    #: What one refill is charged, in cents.
    price_cents: int
    daily_cap: str | None
    daily_cap_ucr: int | None
    runout_hours: int | None
    #: Whether a payment method is saved (a setup-mode checkout or the billing portal saves one).
    payment_method_saved: bool
    #: Refills that failed in a row; at ``breaker_after`` refills stop until the payment method changes.
    failures: int
    breaker_after: int
    breaker_open: bool
    last_request: RefillRequestOut | None


class CardSetupIn(WriteBody):
    """Where Stripe's hosted page sends the customer back."""

    model_config = examples(success_url="https://app.example.com/billing?card=saved",
                            cancel_url="https://app.example.com/billing")

    success_url: Url
    cancel_url: Url


class CardSetupOut(Out):
    #: Stripe's hosted page (a setup-mode Checkout) where the customer saves the card.
    checkout_url: str
    session_id: str
