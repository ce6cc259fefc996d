"""The activity feed, newest first: executions, reservations and what came back of them, purchases,
refunds, grants, expiries and disputes, each with its ``kind`` and signed amount."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.errors import InvalidRequest
from projections.activities import ACTIVITIES
from projections.freshness import freshness
from projections.naming import refund_operation
from projections.queries.paging import NO_CURSOR, Page, check_paging, page_of, require_account, snapshot

Kind = Literal["execution", "reservation", "refund", "purchase", "grant", "expiry", "dispute"]
KINDS: tuple[str, ...] = get_args(Kind)


@dataclass(frozen=True)
class Activity:
    version: int
    entry_id: UUID
    occurred_at: datetime
    kind: str
    #: For what a reservation gave back, named by ``projections.naming.refund_operation``.
    operation: str
    amount_ucr: int
    balance_after_ucr: int
    execution_id: str | None
    reservation_id: UUID | None
    detail: dict[str, Any]


async def activities(engine: AsyncEngine, account_id: str, *, limit: int = 50, offset: int = 0,
                     before: int | None = None, kind: str | None = None) -> Page[Activity]:
    """Activities newest first (only ``kind`` when given); ``before`` continues a stable iteration."""
    check_paging(limit, offset, before)
    if kind is not None and kind not in KINDS:
        raise InvalidRequest(f"kind must be one of: {', '.join(KINDS)}")
    async with snapshot(engine) as conn:
        await require_account(conn, account_id)
        rows = (await conn.execute(text(
            "SELECT version, event_id AS entry_id, occurred_at, kind, operation, amount_ucr, balance_after_ucr,"
            " execution_id, reservation_id, detail"
            " FROM proj_activities WHERE account_id = :a AND version < :b"
            # Spelled out per case, so each plans onto its index (the primary key, or the kind's).
            + (" AND kind = :k" if kind is not None else "")
            + " ORDER BY version DESC LIMIT :l OFFSET :o"),
            {"a": account_id, "b": NO_CURSOR if before is None else before, "k": kind, "l": limit + 1,
             "o": offset})).all()
        fresh = await freshness(conn, ACTIVITIES)
    return page_of([_activity(r._mapping) for r in rows], limit, fresh)


def _activity(row: Any) -> Activity:
    a = Activity(**row)
    if a.kind == "refund" and a.detail.get("refund_of") == "reservation":
        return Activity(**{**row, "operation": refund_operation(a.operation)})
    return a
