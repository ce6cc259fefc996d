"""Usage, analytics and one run's cost (read models).

Each response says how fresh it is: ``as_of_position`` (the last log position its projectors
folded) and ``lag_ms`` (how long the oldest event not folded yet has waited; 0 when caught up).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from pydantic import ConfigDict, Field

from ledger.api.schemas.base import Out


class Fresh(Out):
    as_of_position: int
    lag_ms: int


class UsageBucketOut(Out):
    #: The bucket's first instant (UTC): an hour, a day, a week's Monday, a month's first day.
    start: datetime
    #: The operation, agent, member, flow, deployment or integration it sums.
    key: str
    events: int
    credits: str
    credits_ucr: int
    input_tokens: int
    output_tokens: int


class UsageOut(Fresh):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    account_id: str
    bucket: str
    by: str
    #: The hours summed: those starting in [from, to).
    from_: datetime = Field(alias="from")
    to: datetime
    data: list[UsageBucketOut]
    total: str
    total_ucr: int


class DayOut(Out):
    date: date
    events: int
    credits: str
    credits_ucr: int


class ModelCostOut(Out):
    model: str
    integration: str | None
    events: int
    input_tokens: int
    output_tokens: int
    credits: str
    credits_ucr: int


class DeploymentCostOut(Out):
    deployment_id: str
    #: None for a deployment named only in usage attribution.
    instance_type: str | None
    status: str | None
    events: int
    credits: str
    credits_ucr: int


class RequestOut(Out):
    entry_id: UUID
    execution_id: str
    occurred_at: datetime
    operation: str
    input_tokens: int
    output_tokens: int
    flow: str | None
    agent: str | None
    deployment_id: str | None
    credits: str
    credits_ucr: int


class SuggestionOut(Out):
    #: ``idle_deployment``, ``over_provisioned``, ``cheaper_model`` or ``budget``.
    kind: str
    message: str
    #: The numbers behind it; amounts as ``<name>_ucr`` and ``<name>``.
    figures: dict[str, Any]


class AnalyticsOut(Fresh):
    account_id: str
    days: int
    #: Midnight UTC of the window's first day (the window ends with today).
    window_start: datetime
    series: list[DayOut]
    window_total: str
    window_total_ucr: int
    this_period: str
    this_period_ucr: int
    daily_average: str
    daily_average_ucr: int
    projected_month_end: str
    projected_month_end_ucr: int
    by_model: list[ModelCostOut]
    by_deployment: list[DeploymentCostOut]
    top_requests: list[RequestOut]
    #: When the available balance runs out at the window's burn rate; null when idle.
    runout_at: datetime | None
    available: str
    available_ucr: int
    monthly_budget: str | None
    monthly_budget_ucr: int | None
    suggestions: list[SuggestionOut]


class CostLineOut(Out):
    #: The node, model or tool (operation).
    name: str
    integration: str | None
    events: int
    input_tokens: int
    output_tokens: int
    credits: str
    credits_ucr: int


class ExecutionCostOut(Fresh):
    account_id: str
    execution_id: str
    #: The same as ``execution_id`` and ``flow`` (the Lux shape).
    executionId: str
    flowId: str | None
    flow: str | None
    agent: str | None
    run: str | None
    member: str | None
    started_at: datetime
    ended_at: datetime
    events: int
    #: Per integration (``ai``, ``email`` always; ``sms``, ``voice`` ... when used) and ``total``,
    #: each as ``<name>`` and ``<name>_ucr``.
    credits: dict[str, str | int]
    total: str
    total_ucr: int
    by_node: list[CostLineOut]
    by_model: list[CostLineOut]
    by_tool: list[CostLineOut]


class FlowRunOut(Out):
    #: The Lux shape: ``{"flowId", "executionId", "credits": {"ai", "email", "total"}}`` (+ ``_ucr``).
    flowId: str
    executionId: str
    execution_id: str
    started_at: datetime
    events: int
    credits: dict[str, str | int]


class FlowCostOut(Fresh):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    account_id: str
    flow: str
    flowId: str
    from_: datetime = Field(alias="from")
    to: datetime
    events: int
    credits: dict[str, str | int]
    total: str
    total_ucr: int
    #: The latest executions in the range, newest first (at most 50; ``has_more`` when there are more).
    executions: list[FlowRunOut]
    has_more: bool
