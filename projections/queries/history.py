"""The billing history: one row per usage event, newest first, and per deployment its hours and credits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from projections.freshness import Freshness, freshness
from projections.history import HISTORY
from projections.queries.paging import NO_CURSOR, Page, check_paging, page_of, require_account, snapshot


@dataclass(frozen=True)
class Execution:
    version: int
    entry_id: UUID
    #: The attribution's execution id, else the entry's own id.
    execution_id: str
    occurred_at: datetime
    operation: str
    machine_type: str | None
    duration_s: int | None
    quantities: dict[str, Any]
    cost_ucr: int
    debt_added_ucr: int
    gated: bool
    rate_card_version: str
    member: str | None
    agent: str | None
    flow: str | None
    run: str | None
    node: str | None
    deployment_id: str | None
    hour_index: int | None
    reservation_id: UUID | None


@dataclass(frozen=True)
class DeploymentUsage:
    deployment_id: str
    instance_type: str
    hours: int
    credits_ucr: int
    first_at: datetime
    last_at: datetime


@dataclass(frozen=True)
class DeploymentPage:
    rows: list[DeploymentUsage]
    has_more: bool
    freshness: Freshness


async def executions(engine: AsyncEngine, account_id: str, *, limit: int = 50, offset: int = 0,
                     before: int | None = None) -> Page[Execution]:
    """Executions newest first; ``before`` (a page's ``next_before``) continues a stable iteration."""
    check_paging(limit, offset, before)
    async with snapshot(engine) as conn:
        await require_account(conn, account_id)
        rows = (await conn.execute(text(
            "SELECT version, event_id AS entry_id, COALESCE(execution_id, event_id::text) AS execution_id,"
            " occurred_at, operation, machine_type, duration_s, quantities, cost_ucr, debt_added_ucr, gated,"
            " rate_card_version, member, agent, flow, run, node, deployment_id, hour_index, reservation_id"
            " FROM proj_executions WHERE account_id = :a AND version < :b"
            " ORDER BY version DESC LIMIT :l OFFSET :o"),
            {"a": account_id, "b": NO_CURSOR if before is None else before, "l": limit + 1, "o": offset})).all()
        fresh = await freshness(conn, HISTORY)
    return page_of([Execution(**r._mapping) for r in rows], limit, fresh)


async def deployments(engine: AsyncEngine, account_id: str, *, limit: int = 50, offset: int = 0) -> DeploymentPage:
    """Each deployment's charged hours and their credits, the most recently charged first.

    Offset paging only: an account has few deployments, and a new charge moves one to the top.
    """
    check_paging(limit, offset)
    async with snapshot(engine) as conn:
        await require_account(conn, account_id)
        rows = (await conn.execute(text(
            "SELECT deployment_id, instance_type, hours, credits_ucr, first_at, last_at"
            " FROM proj_deployment_usage WHERE account_id = :a"
            " ORDER BY last_at DESC, deployment_id LIMIT :l OFFSET :o"),
            {"a": account_id, "l": limit + 1, "o": offset})).all()
        fresh = await freshness(conn, HISTORY)
    found = [DeploymentUsage(**r._mapping) for r in rows]
    return DeploymentPage(rows=found[:limit], has_more=len(found) > limit, freshness=fresh)
