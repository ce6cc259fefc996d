"""Typed answers of the API (and the few request shapes a caller builds).

Models are frozen and keep any field the server adds (``model_extra``). Money is exact
everywhere: each amount comes twice, ``<name>_ucr`` (``int`` micro-credits, 1 credit = 1,000,000
µcr) and ``<name>`` (a decimal string of credits with six places), never as a float."""  # float-ok

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, NotRequired, Required, TypedDict, overload
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from ledger.client.errors import LedgerAPIError, error_from_problem
from ledger.money import UCR_PER_CREDIT, format_credits, parse_credits

__all__ = [
    "UCR_PER_CREDIT",
    "Account",
    "Attribution",
    "Balance",
    "Charge",
    "Deployment",
    "Draw",
    "Entry",
    "EntryPage",
    "Estimate",
    "Grant",
    "Me",
    "PriceLine",
    "Release",
    "Reservation",
    "Settlement",
    "SourceAmounts",
    "UsageEvent",
    "UsageResult",
    "format_credits",
    "to_ucr",
]


class Attribution(TypedDict, total=False):
    """Who and what a charge is for (each at most 200 characters). ``workflow`` is ``flow`` by
    another name (give one of the two); the ledger answers with ``flow``."""

    member: str
    agent: str
    flow: str
    workflow: str
    run: str
    node: str
    deployment: str
    execution: str


class UsageEvent(TypedDict, total=False):
    """One metered usage item for ``usage.record([...])``.

    ``account_id`` defaults to the client's account and ``idempotency_key`` to a fresh UUID
    (made once per call, so a retried batch never records an item twice).
    """

    operation: Required[str]
    quantity: NotRequired[int]
    quantities: NotRequired[dict[str, int]]
    attribution: NotRequired[Attribution]
    occurred_at: NotRequired[datetime | str]
    idempotency_key: NotRequired[str]
    account_id: NotRequired[str]


def to_ucr(credits: str | Decimal | int | None = None, *, ucr: int | None = None) -> int:
    """Exact µcr from credits (decimal string, ``Decimal`` or whole ``int``) or ``ucr=`` (one of them).

    Floats are refused: they cannot hold most decimal amounts exactly.
    """
    if (credits is None) == (ucr is None):
        raise ValueError("give exactly one of a credit amount or ucr=")
    if ucr is not None:
        if isinstance(ucr, bool) or not isinstance(ucr, int):
            raise TypeError(f"ucr must be an int, not {type(ucr).__name__}")
        return ucr
    if isinstance(credits, bool) or not isinstance(credits, str | Decimal | int):
        raise TypeError(f"credits must be a decimal string, Decimal or int, not {type(credits).__name__}")
    text = credits if isinstance(credits, str) else format(credits, "f")
    return parse_credits(text)


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class _Written(_Model):
    #: True when the server answered an idempotent replay (the first response again, nothing appended).
    replayed: bool = False


class Me(_Model):
    key_id: str
    role: Literal["operator", "admin", "member", "read"]
    account_id: str | None


class Account(_Written):
    id: str
    name: str
    plan: str
    status: str
    created_at: datetime
    settings: dict[str, Any]


class Entry(_Model):
    """One ledger entry: ``amount_ucr`` is signed (< 0 debit, > 0 credit)."""

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


class EntryPage(_Model):
    """A page of entries, newest first; ``next_cursor`` continues a stable iteration.

    A page is a sequence of its entries: ``for entry in client.credits.history(limit=50)``,
    ``len(page)`` and ``page[0]`` read ``page.data`` (not the model's fields, as a plain
    pydantic model would iterate).
    """

    data: list[Entry]
    has_more: bool
    next_cursor: str | None

    def __iter__(self) -> Iterator[Entry]:  # type: ignore[override]
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    @overload
    def __getitem__(self, index: int) -> Entry: ...

    @overload
    def __getitem__(self, index: slice) -> list[Entry]: ...

    def __getitem__(self, index: int | slice) -> Entry | list[Entry]:
        return self.data[index]


class SourceAmounts(_Model):
    allowance: str
    allowance_ucr: int
    purchase: str
    purchase_ucr: int
    promotion: str
    promotion_ucr: int
    refund: str
    refund_ucr: int


class Balance(_Model):
    """The exact balance; ``available`` is the balance minus what reservations hold.

    The same figures under the names some products use (read-only properties, not sent by the
    server, so ``model_dump()`` leaves them out):

    - ``credits_remaining`` / ``credits_remaining_ucr``: ``available``, what can be spent now;
    - ``total_credits`` / ``total_credits_ucr``: ``balance``, every live credit including those
      reservations hold (minus debt);
    - ``credits_monthly_allowance`` / ``credits_monthly_allowance_ucr``: ``monthly_allowance``,
      the plan's credits per cycle;
    - ``credits_reset_at``: ``resets_at``, when the allowance next resets (``None``: no plan cycle);
    - ``recent_history``: ``recent``, the latest entries, newest first.
    """

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
    runout_at: datetime | None
    version: int
    recent: list[Entry]

    @property
    def credits_remaining(self) -> str:
        return self.available

    @property
    def credits_remaining_ucr(self) -> int:
        return self.available_ucr

    @property
    def total_credits(self) -> str:
        return self.balance

    @property
    def total_credits_ucr(self) -> int:
        return self.balance_ucr

    @property
    def credits_monthly_allowance(self) -> str:
        return self.monthly_allowance

    @property
    def credits_monthly_allowance_ucr(self) -> int:
        return self.monthly_allowance_ucr

    @property
    def credits_reset_at(self) -> datetime | None:
        return self.resets_at

    @property
    def recent_history(self) -> list[Entry]:
        return self.recent


class PriceLine(_Model):
    dimension: str
    quantity: int
    credits_per: str
    per: int
    exact_ucr: str


class Estimate(_Model):
    """What an operation would cost and whether the account could pay it now."""

    operation: str
    quantities: dict[str, int]
    total: str
    total_ucr: int
    sufficient: bool
    remaining: str
    remaining_ucr: int
    reason: str | None
    rate_card_version: str
    lines: list[PriceLine]


class Draw(_Model):
    grant_id: UUID
    source: str
    amount: str
    amount_ucr: int


class Charge(_Written):
    """A recorded charge; ``amount_ucr`` is what was charged (positive)."""

    id: UUID
    operation: str
    quantities: dict[str, int]
    amount: str
    amount_ucr: int
    balance_after: str
    balance_after_ucr: int
    rate_card_version: str
    grants: list[Draw]
    debt_added: str
    debt_added_ucr: int
    created_at: datetime


class UsageResult(_Model):
    """One item of a usage batch: ``created``, ``replayed``, ``rejected`` (never accepted as sent)
    or ``failed`` (not recorded for a transient reason; the client already retried it with the
    same key), the last two with ``error``."""

    idempotency_key: str | None
    status: Literal["created", "replayed", "rejected", "failed"]
    id: UUID | None = None
    amount: str | None = None
    amount_ucr: int | None = None
    error: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Whether the item is recorded."""
        return self.status in ("created", "replayed")

    @property
    def exception(self) -> LedgerAPIError | None:
        """The error a rejected or failed item would raise (``None`` when it was recorded)."""
        return None if self.ok else error_from_problem(self.error or {})

    def raise_for_error(self) -> UsageResult:
        """Raise the item's error if it was rejected or failed; else return it."""
        exc = self.exception
        if exc is not None:
            raise exc
        return self


class Reservation(_Written):
    id: UUID
    operation: str
    held: str
    held_ucr: int
    expires_at: datetime
    balance_after: str
    balance_after_ucr: int


class Settlement(_Written):
    reservation_id: UUID
    charge: Charge
    released: str
    released_ucr: int


class Release(_Written):
    reservation_id: UUID
    released: str
    released_ucr: int
    balance_after: str
    balance_after_ucr: int


class Deployment(_Written):
    id: str
    instance_type: str
    status: str
    hourly: str
    hourly_ucr: int
    hours_charged: int
    credits: str
    credits_ucr: int
    paused_reason: str | None
    started_at: datetime


class Grant(_Written):
    grant_id: UUID
    source: str
    amount: str
    amount_ucr: int
    expires_at: datetime | None
    balance_after: str
    balance_after_ucr: int
    code: str | None = None
    debt_settled: str
    debt_settled_ucr: int
