"""Notifications (alerts) and webhook endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import Field, StrictBool

from ledger.api.schemas.base import Body, Out, WriteBody, examples


class NotificationOut(Out):
    id: UUID
    created_at: datetime
    kind: str
    level: str
    message: str
    scope: str
    subject: str
    period: str
    threshold_pct: int
    spent: str
    spent_ucr: int
    limit: str
    limit_ucr: int


class NotificationPage(Out):
    data: list[NotificationOut]
    has_more: bool
    next_cursor: str | None


class WebhookEndpointIn(WriteBody):
    model_config = examples(url="https://example.com/hooks/credits", events=["AlertRaised", "UsageMetered"])

    url: Annotated[str, Field(min_length=8, max_length=2000)]
    #: Event types to deliver (the ``type`` of the ledger's events); omitted: all of them.
    events: Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]], Field(max_length=50)] | None = None


class WebhookEndpointPatch(Body):
    model_config = examples(enabled=False)

    #: ``false``: no deliveries from now on (events meanwhile are not sent later); ``true``: resume.
    enabled: StrictBool


class WebhookEndpointOut(Out):
    id: str
    url: str
    events: list[str] | None
    #: ``enabled``, or ``disabled`` (by the account, or because the receiver answered 410 Gone).
    status: str
    enabled: bool
    created_at: datetime
    #: The signing secret (Standard Webhooks): in the creating response only.
    secret: str | None = None


class WebhookEndpointList(Out):
    data: list[WebhookEndpointOut]
