"""The base classes of request and response bodies."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from ledger.api.schemas.fields import IdempotencyKey


def examples(**example: Any) -> ConfigDict:
    """A request body's config: unknown fields refused, and one example for the OpenAPI document."""
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [example]})


class Body(BaseModel):
    """A request body: unknown fields are refused so a typo is a 422, not a silent default."""

    model_config = ConfigDict(extra="forbid")


class WriteBody(Body):
    #: Same as the ``Idempotency-Key`` header (which wins when both are given and agree).
    idempotency_key: IdempotencyKey | None = None


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)
