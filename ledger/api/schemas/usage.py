"""Pricing, gated charges, metered usage batches, estimates, reservations and explanations."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field, StrictInt

from ledger.api.schemas.balance import Entry
from ledger.api.schemas.base import Body, Out, WriteBody, examples
from ledger.api.schemas.fields import CreditsText, Quantities, Quantity, Ucr
from ledger.events import FLOW_ALIASES


class AttributionIn(Body):
    member: Annotated[str, Field(max_length=200)] | None = None
    agent: Annotated[str, Field(max_length=200)] | None = None
    #: ``workflow`` is the same field (``ledger.events.FLOW_ALIASES``); give one of the two.
    flow: Annotated[str, Field(max_length=200)] | None = Field(
        default=None, validation_alias=FLOW_ALIASES,
        description="The flow (workflow) the usage belongs to; `workflow` is accepted as the same field.")
    run: Annotated[str, Field(max_length=200)] | None = None
    node: Annotated[str, Field(max_length=200)] | None = None
    deployment: Annotated[str, Field(max_length=200)] | None = None
    execution: Annotated[str, Field(max_length=200)] | None = None


class UsageIn(WriteBody):
    model_config = examples(
        operation="gpt-4o",
        quantities={"input_tokens": 1200, "output_tokens": 350},
        attribution={"agent": "support-bot", "run": "run-42"},
    )

    operation: Annotated[str, Field(min_length=1, max_length=100, examples=["gpt-4o"])]
    quantity: Quantity | None = None
    quantities: Quantities | None = None
    attribution: AttributionIn | None = None


class EstimateIn(Body):
    model_config = examples(operation="claude-haiku", quantities={"input_tokens": 8000, "output_tokens": 1000})

    operation: Annotated[str, Field(min_length=1, max_length=100, examples=["gpt-4o"])]
    quantity: Quantity | None = None
    quantities: Quantities | None = None
    attribution: AttributionIn | None = None


class PriceLineOut(Out):
    dimension: str
    quantity: int
    credits_per: str
    per: int
    exact_ucr: str


class EstimateOut(Out):
    operation: str
    quantities: dict[str, int]
    total: str
    total_ucr: int
    sufficient: bool
    remaining: str
    remaining_ucr: int
    reason: str | None
    rate_card_version: str
    lines: list[PriceLineOut]


class Draw(Out):
    grant_id: UUID
    source: str
    amount: str
    amount_ucr: int


class ChargeOut(Out):
    id: UUID
    operation: str
    quantities: dict[str, int]
    #: What was charged (a debit; the ledger entry shows it negative).
    amount: str
    amount_ucr: int
    balance_after: str
    balance_after_ucr: int
    rate_card_version: str
    grants: list[Draw]
    debt_added: str
    debt_added_ucr: int
    created_at: datetime


class UsageBatchIn(Body):
    model_config = examples(
        events=[
            {"account_id": "acme", "operation": "email", "quantity": 300, "idempotency_key": "mail-0001"},
            {"account_id": "acme", "operation": "voice_minute", "quantity": 95, "idempotency_key": "call-8812"},
        ],
    )

    #: Each item: ``{account_id, operation, quantity | quantities, attribution?, occurred_at?,
    #: idempotency_key}``. Items are checked one by one: a bad item rejects only itself.
    events: Annotated[list[Any], Field(min_length=1, max_length=1000)]


class UsageResult(Out):
    idempotency_key: str | None
    #: ``rejected``: never accepted as sent; ``failed``: not recorded now, retry with the same key.
    status: Literal["created", "replayed", "rejected", "failed"]
    id: UUID | None = None
    amount: str | None = None
    amount_ucr: int | None = None
    error: dict[str, Any] | None = None


class UsageBatchOut(Out):
    results: list[UsageResult]


class ReservationIn(WriteBody):
    model_config = examples(operation="training_h100_per_minute", quantity=120, ttl_s=10800)

    operation: Annotated[str, Field(min_length=1, max_length=100, examples=["training_h100_per_minute"])]
    quantity: Quantity | None = None
    quantities: Quantities | None = None
    amount: CreditsText | None = None
    amount_ucr: Ucr | None = None
    ttl_s: Annotated[StrictInt, Field(gt=0, le=30 * 24 * 3600)] | None = None
    attribution: AttributionIn | None = None


class ReservationOut(Out):
    id: UUID
    operation: str
    held: str
    held_ucr: int
    expires_at: datetime
    balance_after: str
    balance_after_ucr: int


class SettleIn(WriteBody):
    quantity: Quantity | None = None
    quantities: Quantities | None = None
    attribution: AttributionIn | None = None


class SettleOut(Out):
    reservation_id: UUID
    charge: ChargeOut
    released: str
    released_ucr: int


class ReleaseOut(Out):
    reservation_id: UUID
    released: str
    released_ucr: int
    balance_after: str
    balance_after_ucr: int


class ExplainOut(Out):
    entry: Entry
    operation: str | None
    rate_card_version: str | None
    rates: list[PriceLineOut]
    quantities: dict[str, int]
    exact_cost: str | None
    minimum: str | None
    minimum_ucr: int | None
    charged: str
    charged_ucr: int
    rounding: str
    grants: list[Draw]
    debt_added: str
    debt_added_ucr: int
    limits_checked: list[dict[str, Any]]
    gated: bool | None
