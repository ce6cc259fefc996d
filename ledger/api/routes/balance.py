"""Balance, the ledger (the account's own event stream, newest first) and why an entry cost what it did."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from ledger.api import render
from ledger.api import schemas as s
from ledger.api.body import JsonBodyRoute
from ledger.api.deps import RT, Reader
from ledger.errors import InvalidRequest
from ledger.events import DebtSettled, UsageMetered
from ledger.money import format_credits

router = APIRouter(tags=["balance"], responses=s.ERRORS, route_class=JsonBodyRoute)


#: Stream versions are PostgreSQL bigints: a larger cursor was never one this API returned.
_MAX_VERSION = 2**63 - 1


def encode_cursor(version: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{version}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, _, version = raw.partition(":")
        if tag != "v1" or not version.isascii() or not version.isdigit() or int(version) > _MAX_VERSION:
            raise ValueError(raw)
        return int(version)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("cursor is not one this API returned") from None


@router.get("/v1/accounts/{account}/balance", response_model=s.BalanceOut)
async def balance(account: str, rt: RT, who: Reader) -> s.BalanceOut:
    """The exact balance (inline state), by source, with the allowance, a run-out forecast and the last 20 entries."""
    b = await rt.ledger.balance(account, recent=20, forecast=True)
    return render.balance(b, b.entries, b.runout_at)


@router.get("/v1/accounts/{account}/ledger", response_model=s.EntryPage)
async def ledger(account: str, rt: RT, who: Reader,
                 limit: Annotated[int, Query(ge=1, le=500)] = 50,
                 offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
                 cursor: Annotated[str | None, Query(max_length=100)] = None) -> s.EntryPage:
    """Entries newest first: signed amount (< 0 debit), balance after, attribution.

    ``cursor`` (from ``next_cursor``) continues a stable iteration: entries appended meanwhile
    never shift the pages.
    """
    before = decode_cursor(cursor) if cursor else None
    rows = await rt.ledger.ledger_page(account, limit=limit + 1, offset=offset, before_version=before)
    more = len(rows) > limit
    rows = rows[:limit]
    return s.EntryPage(data=[render.entry(v, e) for v, e in rows], has_more=more,
                       next_cursor=encode_cursor(rows[-1][0]) if more and rows else None)


@router.get("/v1/accounts/{account}/entries/{entry_id}/explain", response_model=s.ExplainOut)
async def explain(account: str, entry_id: UUID, rt: RT, who: Reader) -> s.ExplainOut:
    """Why an entry cost what it did: its rate-card version and rates, the quantities, the exact
    product before rounding, the rounding, the grants drawn in order, and the limits in force."""
    x = await rt.ledger.explain(account, entry_id)
    e, entry = x.entry, render.entry(x.version, x.entry)
    if not isinstance(e, UsageMetered):
        return s.ExplainOut(
            entry=entry, operation=entry.operation, rate_card_version=None, rates=[], quantities={},
            exact_cost=None, minimum=None, minimum_ucr=None, charged=format_credits(e.amount_ucr),
            charged_ucr=e.amount_ucr, rounding=x.rounding,
            grants=render.draws(e) if isinstance(e, DebtSettled) else [], debt_added="0.000000", debt_added_ucr=0,
            limits_checked=x.limits_checked, gated=None)
    return s.ExplainOut(
        entry=entry, operation=e.operation, rate_card_version=e.rate_card_version,
        rates=render.price_lines(x.price) if x.price else [], quantities=e.quantities, exact_cost=e.exact_cost,
        **render.money_pair("minimum", x.price.minimum_ucr if x.price else None),
        charged=format_credits(e.cost_ucr), charged_ucr=e.cost_ucr, rounding=x.rounding,
        grants=render.draws(e), debt_added=format_credits(e.debt_added_ucr), debt_added_ucr=e.debt_added_ucr,
        limits_checked=x.limits_checked, gated=e.gated)
