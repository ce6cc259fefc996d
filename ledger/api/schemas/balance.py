"""Balances and ledger entries."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from ledger.api.schemas.base import Out


class Entry(Out):
    id: UUID
    version: int
    created_at: datetime
    occurred_at: datetime
    type: str
    operation: str | None
    amount: str
    amount_ucr: int
    balance_after: str
    balance_after_ucr: int
    attribution: dict[str, str]
    idempotency_key: str | None
    details: dict[str, Any]


class EntryPage(Out):
    data: list[Entry]
    has_more: bool
    next_cursor: str | None


class SourceAmounts(Out):
    allowance: str
    allowance_ucr: int
    purchase: str
    purchase_ucr: int
    promotion: str
    promotion_ucr: int
    refund: str
    refund_ucr: int


class BalanceOut(Out):
    account_id: str
    plan: str
    status: str
    balance: str
    balance_ucr: int
    available: str
    available_ucr: int
    reserved: str
    reserved_ucr: int
    debt: str
    debt_ucr: int
    by_source: SourceAmounts
    monthly_allowance: str
    monthly_allowance_ucr: int
    resets_at: datetime | None
    #: When the balance runs out at the last 7 days' burn rate; null when idle.
    runout_at: datetime | None
    version: int
    recent: list[Entry]
