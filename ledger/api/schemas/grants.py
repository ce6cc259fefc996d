"""Buying and granting credits: coupons and grants."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, Field

from ledger.api.schemas.base import Out, WriteBody, examples
from ledger.api.schemas.fields import CreditsText, Ucr


class CouponIn(WriteBody):
    code: Annotated[str, Field(min_length=1, max_length=100, examples=["WELCOME10"])]


class GrantIn(WriteBody):
    model_config = examples(
        amount="2500",
        source="promotion",
        expires_at="2027-01-31T00:00:00Z",
        reason="support goodwill",
    )

    amount: CreditsText | None = None
    amount_ucr: Ucr | None = None
    source: Literal["promotion", "refund", "purchase", "allowance"] = "promotion"
    expires_at: AwareDatetime | None = None
    reason: Annotated[str, Field(min_length=1, max_length=500, examples=["support goodwill"])]


class GrantOut(Out):
    grant_id: UUID
    source: str
    amount: str
    amount_ucr: int
    expires_at: datetime | None
    balance_after: str
    balance_after_ucr: int
    code: str | None = None
    debt_settled: str
    debt_settled_ucr: int
