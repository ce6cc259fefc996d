"""The account's plan, paid through Stripe: ``PUT /v1/accounts/{account}/plan``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from ledger.api.schemas.base import Out, WriteBody, examples
from ledger.api.schemas.fields import Url


class PlanIn(WriteBody):
    """The plan to be on (``GET /v1/rates`` lists them). A paid plan with no live subscription is
    bought through Stripe Checkout: give ``success_url`` and ``cancel_url``."""

    model_config = examples(plan="pro", success_url="https://app.example.com/billing?plan=pro",
                            cancel_url="https://app.example.com/billing")

    plan: Annotated[str, Field(min_length=1, max_length=100, examples=["pro"])]
    success_url: Url | None = None
    cancel_url: Url | None = None


class PlanOut(Out):
    #: ``checkout`` (pay on ``checkout_url``), ``scheduled`` (the new price from ``effective_at``),
    #: ``cancelling`` (back to the free plan at ``effective_at``), ``resumed``, ``changed`` (now),
    #: ``unchanged``.
    status: str
    plan: str
    current_plan: str
    checkout_url: str | None = None
    session_id: str | None = None
    stripe_subscription: str | None = None
    effective_at: datetime | None = None
