"""What every event shares (``EventBase``: the envelope) and the small values events carry.

``ledger.events`` re-exports all of it; import from there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

GrantSource = Literal["allowance", "purchase", "promotion", "refund"]


class Draw(BaseModel):
    """Part of a debit taken from one grant."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    grant_id: UUID
    source: GrantSource
    amount_ucr: int


def no_nul(value: object) -> object:
    """PostgreSQL text and jsonb cannot hold U+0000: refuse it as bad input, not a database error."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    return value


#: ``workflow`` is accepted wherever ``flow`` is (the CSV export's column is ``workflow``): one field,
#: stored and answered as ``flow``. Giving both is a 422 (``workflow``: extra input), never a guess.
FLOW_ALIASES = AliasChoices("flow", "workflow")


class Attribution(BaseModel):
    """Who and what a use of credits belongs to; every field optional."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    _no_nul = field_validator("*", mode="before")(no_nul)
    member: str | None = Field(default=None, max_length=200)
    agent: str | None = Field(default=None, max_length=200)
    flow: str | None = Field(default=None, max_length=200, validation_alias=FLOW_ALIASES)
    run: str | None = Field(default=None, max_length=200)
    node: str | None = Field(default=None, max_length=200)
    deployment: str | None = Field(default=None, max_length=200)
    execution: str | None = Field(default=None, max_length=200)


class EventBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID
    account_id: str
    occurred_at: datetime
    recorded_at: datetime
    idempotency_key: str | None = None
    amount_ucr: int = 0
    balance_after_ucr: int
    schema_version: int = 1
