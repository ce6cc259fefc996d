"""Usage, analytics and one run's cost (read models): the answers' models and the ``Call`` of each
endpoint (``client.credits.usage/analytics/execution/flow``), as ``calls`` does for the others.

Every answer says how fresh it is: ``as_of_position`` and ``lag_ms`` (0 when caught up).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from pydantic import ConfigDict, Field

from ledger.client.calls import Call, _account_path, _model, _seg, check_int
from ledger.client.models import _Model


class UsageBucket(_Model):
    start: datetime
    key: str
    events: int
    credits: str
    credits_ucr: int
    input_tokens: int
    output_tokens: int


class UsageReport(_Model):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    account_id: str
    bucket: str
    by: str
    start: datetime = Field(alias="from")
    to: datetime
    data: list[UsageBucket]
    total: str
    total_ucr: int
    as_of_position: int
    lag_ms: int


class DayCost(_Model):
    date: date
    events: int
    credits: str
    credits_ucr: int


class ModelCost(_Model):
    model: str
    integration: str | None
    events: int
    input_tokens: int
    output_tokens: int
    credits: str
    credits_ucr: int


class DeploymentCost(_Model):
    deployment_id: str
    instance_type: str | None
    status: str | None
    events: int
    credits: str
    credits_ucr: int


class TopRequest(_Model):
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


class Suggestion(_Model):
    kind: str
    message: str
    figures: dict[str, Any]


class Analytics(_Model):
    account_id: str
    days: int
    window_start: datetime
    series: list[DayCost]
    window_total: str
    window_total_ucr: int
    this_period: str
    this_period_ucr: int
    daily_average: str
    daily_average_ucr: int
    projected_month_end: str
    projected_month_end_ucr: int
    by_model: list[ModelCost]
    by_deployment: list[DeploymentCost]
    top_requests: list[TopRequest]
    runout_at: datetime | None
    available: str
    available_ucr: int
    monthly_budget: str | None
    monthly_budget_ucr: int | None
    suggestions: list[Suggestion]
    as_of_position: int
    lag_ms: int


class CostLine(_Model):
    name: str
    integration: str | None
    events: int
    input_tokens: int
    output_tokens: int
    credits: str
    credits_ucr: int


class ExecutionCost(_Model):
    account_id: str
    execution_id: str
    flow: str | None
    agent: str | None
    run: str | None
    member: str | None
    started_at: datetime
    ended_at: datetime
    events: int
    #: Per integration (``ai``, ``email`` always) and ``total``, as ``<name>`` and ``<name>_ucr``.
    credits: dict[str, str | int]
    total: str
    total_ucr: int
    by_node: list[CostLine]
    by_model: list[CostLine]
    by_tool: list[CostLine]
    as_of_position: int
    lag_ms: int


class FlowRun(_Model):
    flowId: str
    executionId: str
    execution_id: str
    started_at: datetime
    events: int
    credits: dict[str, str | int]


class FlowCost(_Model):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    account_id: str
    flow: str
    flowId: str
    start: datetime = Field(alias="from")
    to: datetime
    events: int
    credits: dict[str, str | int]
    total: str
    total_ucr: int
    executions: list[FlowRun]
    has_more: bool
    as_of_position: int
    lag_ms: int


def _range(start: datetime | str | None, end: datetime | str | None) -> dict[str, str | int]:
    params: dict[str, str | int] = {}
    for name, value in (("from", start), ("to", end)):
        if value is not None:
            params[name] = value.isoformat() if isinstance(value, datetime) else value
    return params


def usage(bucket: str, by: str, start: datetime | str | None, end: datetime | str | None) -> Call[UsageReport]:
    return Call("GET", _account_path(None, "/usage"), _model(UsageReport),
                params={"bucket": bucket, "by": by, **_range(start, end)})


def analytics(days: int) -> Call[Analytics]:
    check_int("days", days)
    return Call("GET", _account_path(None, "/analytics"), _model(Analytics), params={"days": days})


def execution(execution_id: str) -> Call[ExecutionCost]:
    return Call("GET", _account_path(None, f"/executions/{_seg(execution_id)}"), _model(ExecutionCost))


def flow(name: str, start: datetime | str | None, end: datetime | str | None) -> Call[FlowCost]:
    return Call("GET", _account_path(None, f"/flows/{_seg(name)}"), _model(FlowCost), params=_range(start, end))
