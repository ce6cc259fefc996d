"""Accounts, their API keys, and the caller's own key (``/v1/me``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from ledger.api.schemas.base import Out, WriteBody


class AccountIn(WriteBody):
    id: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:@-]+$",
                             examples=["acme"])] | None = None
    name: Annotated[str, Field(min_length=1, max_length=200, examples=["Acme Inc."])]
    plan: Annotated[str, Field(max_length=100, examples=["pro"])] | None = None


class AccountOut(Out):
    id: str
    name: str
    plan: str
    status: Literal["active", "in_debt", "closed"]
    created_at: datetime
    #: e.g. ``budget``: its amounts in both forms, like every amount (``monthly_limit``, ``monthly_limit_ucr``).
    settings: dict[str, Any]


class AccountSummaryOut(Out):
    id: str
    name: str
    plan: str
    status: Literal["active", "in_debt", "closed"]
    created_at: datetime
    balance: str
    balance_ucr: int
    available: str
    available_ucr: int
    reserved: str
    reserved_ucr: int
    debt: str
    debt_ucr: int


class AccountPage(Out):
    data: list[AccountSummaryOut]
    has_more: bool
    #: The last id of this page: ``?after=`` it for the next.
    next_cursor: str | None


class ApiKeyIn(WriteBody):
    role: Literal["admin", "member", "read"]
    name: Annotated[str, Field(min_length=1, max_length=200, examples=["billing backend"])]


class ApiKeyOut(Out):
    id: str
    prefix: str
    role: str
    name: str
    created_at: datetime
    revoked_at: datetime | None = None
    #: The whole key: in the creating response only, never again (null on an idempotent replay).
    key: str | None = None


class ApiKeyList(Out):
    data: list[ApiKeyOut]


class MeOut(Out):
    key_id: str
    role: str
    account_id: str | None
