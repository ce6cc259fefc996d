"""The read models through the SDK: the billing history (per execution, per deployment) and the
activity feed; their answers' models and the ``Call`` of each endpoint, as ``calls`` does for the others.

Pages are sequences of their rows (``for e in client.credits.executions()``, ``len(page)``,
``page[0]``) and say how fresh they are (``as_of_position``, ``lag_ms``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Generic, TypeVar, overload
from uuid import UUID

from ledger.client.calls import MAX_PAGE, Call, _account_path, _model, check_int
from ledger.client.models import _Model

R = TypeVar("R")


class Execution(_Model):
    """One usage entry of the billing history; ``credits_ucr`` is what it cost."""

    execution_id: str
    entry_id: UUID
    version: int
    created_at: datetime
    operation: str
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


class DeploymentUsage(_Model):
    deployment_id: str
    machine_type: str
    hours: int
    credits: str
    credits_ucr: int
    first_at: datetime
    last_at: datetime


class Activity(_Model):
    """One entry of the activity feed; ``amount_ucr`` is signed (< 0 out, > 0 in)."""

    id: UUID
    version: int
    created_at: datetime
    kind: str
    operation: str
    amount: str
    amount_ucr: int
    balance_after: str
    balance_after_ucr: int
    execution_id: str | None
    reservation_id: UUID | None
    detail: dict[str, Any]


class _Page(_Model, Generic[R]):
    """A page of a read model, newest first: a sequence of its rows, with its freshness."""

    data: list[R]
    has_more: bool
    next_cursor: str | None
    limit: int
    offset: int
    as_of_position: int
    lag_ms: int

    def __iter__(self) -> Iterator[R]:  # type: ignore[override]
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    @overload
    def __getitem__(self, index: int) -> R: ...

    @overload
    def __getitem__(self, index: slice) -> list[R]: ...

    def __getitem__(self, index: int | slice) -> R | list[R]:
        return self.data[index]


class ExecutionPage(_Page[Execution]):
    pass


class DeploymentUsagePage(_Page[DeploymentUsage]):
    pass


class ActivityPage(_Page[Activity]):
    pass


def _params(limit: int, offset: int, cursor: str | None) -> dict[str, str | int]:
    check_int("limit", limit)
    check_int("offset", offset)
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be 1..{MAX_PAGE}")
    if offset < 0:
        raise ValueError("offset must be >= 0")
    params: dict[str, str | int] = {"limit": limit, "offset": offset}
    if cursor is not None:
        params["cursor"] = cursor
    return params


def executions(limit: int = 50, offset: int = 0, cursor: str | None = None) -> Call[ExecutionPage]:
    return Call("GET", _account_path(None, "/history"), _model(ExecutionPage), params=_params(limit, offset, cursor))


def deployments(limit: int = 50, offset: int = 0) -> Call[DeploymentUsagePage]:
    return Call("GET", _account_path(None, "/history/deployments"), _model(DeploymentUsagePage),
                params=_params(limit, offset, None))


def activities(limit: int = 50, offset: int = 0, cursor: str | None = None,
               kind: str | None = None) -> Call[ActivityPage]:
    params = _params(limit, offset, cursor)
    if kind is not None:
        params["kind"] = kind
    return Call("GET", _account_path(None, "/activities"), _model(ActivityPage), params=params)


def next_executions(page: ExecutionPage, page_size: int) -> Call[ExecutionPage] | None:
    """The call for the page after ``page`` in a stable (cursor) iteration, or ``None`` at the end."""
    if not page.has_more or page.next_cursor is None:
        return None
    return executions(limit=page_size, cursor=page.next_cursor)


def next_activities(page: ActivityPage, page_size: int, kind: str | None) -> Call[ActivityPage] | None:
    if not page.has_more or page.next_cursor is None:
        return None
    return activities(limit=page_size, cursor=page.next_cursor, kind=kind)
