"""Read models of usage: buckets by operation, attribution or integration; the 7/14/30-day
analytics with suggestions; one run's cost. Each says how fresh it is (``as_of_position``,
``lag_ms``); before the projectors have run, the figures are empty and the lag says why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query

from ledger.api import render_analytics as render
from ledger.api import schemas as s
from ledger.api.body import JsonBodyRoute
from ledger.api.deps import RT, Reader
from ledger.api.schemas import analytics as a
from projections.queries import usage as reads

router = APIRouter(tags=["analytics"], responses=s.ERRORS, route_class=JsonBodyRoute)


@router.get("/v1/accounts/{account}/usage", response_model=a.UsageOut)
async def usage(
    account: str, rt: RT, who: Reader,
    bucket: Annotated[str, Query(max_length=10, description="hour, day, week or month.")] = "day",
    by: Annotated[str, Query(max_length=20, description=(
        "operation, agent, member, flow, deployment or integration (the rate card's, e.g. ai, email)."))] = "operation",
    start: Annotated[datetime | None, Query(alias="from", description=(
        "First hour (UTC when no offset); default: 48 hours, 30 days, 12 weeks or 365 days before `to`."))] = None,
    end: Annotated[datetime | None, Query(alias="to", description=(
        "End (exclusive; default: the end of the current hour). At most 31 days of hours, 366 of days,"
        " 731 of weeks, 1827 of months."))] = None,
) -> a.UsageOut:
    """Usage summed per bucket and per operation, attribution value or integration."""
    return render.usage(await reads.usage(rt.ledger, account, bucket=bucket, by=by, start=start, end=end))


@router.get("/v1/accounts/{account}/analytics", response_model=a.AnalyticsOut)
async def analytics(account: str, rt: RT, who: Reader,
                    days: Annotated[int, Query(description="The window: 7, 14 or 30 days ending today.")] = 30,
                    ) -> a.AnalyticsOut:
    """Daily series, this month so far, daily average, projected month-end, cost by model and
    deployment, the most expensive requests, a run-out forecast and suggestions."""
    return render.analytics(await reads.analytics(rt.ledger, account, days))


@router.get("/v1/accounts/{account}/executions/{execution_id}", response_model=a.ExecutionCostOut)
async def execution(account: str, rt: RT, who: Reader,
                    execution_id: Annotated[str, Path(max_length=200)]) -> a.ExecutionCostOut:
    """One run's cost: its flow and agent, credits by integration (and total), by node, model and tool.

    ``execution_id`` is the usage's ``attribution.execution``, or an entry id for usage that named none.
    """
    return render.execution(await reads.execution(rt.ledger, account, execution_id))


@router.get("/v1/accounts/{account}/flows/{flow}", response_model=a.FlowCostOut)
async def flow(account: str, rt: RT, who: Reader, flow: Annotated[str, Path(max_length=200)],
               start: Annotated[datetime | None, Query(alias="from", description=(
                   "First hour (UTC when no offset); default: 30 days before `to`."))] = None,
               end: Annotated[datetime | None, Query(alias="to", description=(
                   "End (exclusive; default: the end of the current hour); at most 366 days after `from`."))] = None,
               ) -> a.FlowCostOut:
    """A flow's cost: credits by integration and total, and its latest executions (newest first),
    each as ``{flowId, executionId, credits: {ai, email, ..., total}}``."""
    return render.flow(await reads.flow(rt.ledger, account, flow, start=start, end=end))
