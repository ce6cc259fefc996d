"""The read models' pages: billing history (per execution, per deployment) and the activity feed.

Each page says how fresh it is: ``as_of_position`` (the last log position its projector folded)
and ``lag_ms`` (how long the oldest event not folded yet has waited; 0 when caught up).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from ledger.api.schemas.base import Out


class Freshness(Out):
    as_of_position: int
    lag_ms: int


class ExecutionOut(Out):
    #: The attribution's execution id, else the entry's own id.
    execution_id: str
    #: The ledger entry (``GET /ledger``, ``/entries/{id}/explain``).
    entry_id: UUID
    version: int
    created_at: datetime
    operation: str
    #: The instance type of a deployment's hourly charge.
    machine_type: str | None
    duration_s: int | None
    quantities: dict[str, Any]
    credits: str
    credits_ucr: int
    debt_added: str
    debt_added_ucr: int
    gated: bool
    rate_card_version: str
    attribution: dict[str, str]
    deployment_id: str | None
    hour_index: int | None
    reservation_id: UUID | None


class ExecutionPage(Freshness):
    data: list[ExecutionOut]
    has_more: bool
    next_cursor: str | None
    limit: int
    offset: int


class DeploymentHistoryOut(Out):
    deployment_id: str
    machine_type: str
    hours: int
    credits: str
    credits_ucr: int
    first_at: datetime
    last_at: datetime


class DeploymentHistoryPage(Freshness):
    data: list[DeploymentHistoryOut]
    has_more: bool
    #: Always null: offset paging (an account has few deployments).
    next_cursor: str | None
    limit: int
    offset: int


class ActivityOut(Out):
    #: The ledger entry this activity is.
    id: UUID
    version: int
    created_at: datetime
    kind: str
    operation: str
    #: Signed: < 0 credits went out (usage, a hold), > 0 they came in.
    amount: str
    amount_ucr: int
    balance_after: str
    balance_after_ucr: int
    execution_id: str | None
    reservation_id: UUID | None
    #: What else it says, by kind (pack, cents paid, reason, quantities, ...); amounts in both forms.
    detail: dict[str, Any]


class ActivityPage(Freshness):
    data: list[ActivityOut]
    has_more: bool
    next_cursor: str | None
    limit: int
    offset: int
