"""Read models: the billing history (per execution, per deployment) and the activity feed.

Pages are newest first with ``limit``/``offset``; ``cursor`` (from ``next_cursor``) continues a
stable iteration. Each page says how fresh it is (``as_of_position``, ``lag_ms``); before the
projectors have run it is empty, with the lag of what they have yet to fold.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ledger.api import render_history as render
from ledger.api import schemas as s
from ledger.api.body import JsonBodyRoute
from ledger.api.deps import RT, Reader
from ledger.api.routes.balance import decode_cursor, encode_cursor
from ledger.api.schemas import history as h
from projections.queries import activities as activity_reads
from projections.queries import history as history_reads
from projections.queries.activities import Kind

router = APIRouter(tags=["history"], responses=s.ERRORS, route_class=JsonBodyRoute)

Limit = Annotated[int, Query(ge=1, le=500, description="Rows per page (1-500).")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip, newest first.")]
Cursor = Annotated[str | None, Query(max_length=100, description="A page's `next_cursor`: continue stably.")]


@router.get("/v1/accounts/{account}/history", response_model=h.ExecutionPage)
async def history(account: str, rt: RT, who: Reader, limit: Limit = 50, offset: Offset = 0,
                  cursor: Cursor = None) -> h.ExecutionPage:
    """Executions newest first: execution id, operation, machine type, duration, quantities, credits."""
    page = await history_reads.executions(rt.ledger.engine, account, limit=limit, offset=offset,
                                          before=decode_cursor(cursor) if cursor else None)
    return h.ExecutionPage(
        data=[render.execution(e) for e in page.rows], has_more=page.has_more,
        next_cursor=encode_cursor(page.next_before) if page.next_before is not None else None,
        limit=limit, offset=offset, as_of_position=page.freshness.as_of_position, lag_ms=page.freshness.lag_ms)


@router.get("/v1/accounts/{account}/history/deployments", response_model=h.DeploymentHistoryPage)
async def deployment_history(account: str, rt: RT, who: Reader, limit: Limit = 50,
                             offset: Offset = 0) -> h.DeploymentHistoryPage:
    """Per deployment, the hours charged and their credits, the most recently charged first."""
    page = await history_reads.deployments(rt.ledger.engine, account, limit=limit, offset=offset)
    return h.DeploymentHistoryPage(
        data=[render.deployment(d) for d in page.rows], has_more=page.has_more, next_cursor=None,
        limit=limit, offset=offset, as_of_position=page.freshness.as_of_position, lag_ms=page.freshness.lag_ms)


@router.get("/v1/accounts/{account}/activities", response_model=h.ActivityPage)
async def activities(account: str, rt: RT, who: Reader, limit: Limit = 50, offset: Offset = 0,
                     cursor: Cursor = None,
                     kind: Annotated[Kind | None, Query(description="Only activities of this kind.")] = None,
                     ) -> h.ActivityPage:
    """Executions, purchases, grants, refunds, reservations, expiries and disputes, newest first, each
    with its ``kind`` and signed amount. What a reservation gives back is a positive ``refund``
    named for its operation (``training_h100_per_minute`` -> ``training_refund_h100``)."""
    page = await activity_reads.activities(rt.ledger.engine, account, limit=limit, offset=offset,
                                           before=decode_cursor(cursor) if cursor else None, kind=kind)
    return h.ActivityPage(
        data=[render.activity(a) for a in page.rows], has_more=page.has_more,
        next_cursor=encode_cursor(page.next_before) if page.next_before is not None else None,
        limit=limit, offset=offset, as_of_position=page.freshness.as_of_position, lag_ms=page.freshness.lag_ms)
