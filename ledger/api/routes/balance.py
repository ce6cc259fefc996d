"""Balance, the ledger (the account's own event stream, newest first) and why an entry cost what it did."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query
from sqlalchemy import text

from ledger.api import render
from ledger.api import schemas as s
from ledger.api.deps import RT, Reader
from ledger.api.lean import LeanRoute
from ledger.errors import InvalidRequest
from ledger.events import BudgetSet, DebtSettled, LimitSet, UsageMetered
from ledger.money import format_credits
from ledger.rate_cards import rate_card_version
from ledger.rates import price
from ledger.store import EVENT_COLUMNS, row_to_event

router = APIRouter(tags=["balance"], responses=s.ERRORS, route_class=LeanRoute)


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
    version, e = await rt.ledger.entry(account, entry_id)
    entry = render.entry(version, e)
    if not isinstance(e, UsageMetered):
        return s.ExplainOut(
            entry=entry, operation=entry.operation, rate_card_version=None, rates=[], quantities={},
            exact_cost=None, minimum=None, minimum_ucr=None, charged=format_credits(e.amount_ucr),
            charged_ucr=e.amount_ucr, rounding="none: this entry is not priced usage",
            grants=render.draws(e) if isinstance(e, DebtSettled) else [], debt_added="0.000000", debt_added_ucr=0,
            limits_checked=[], gated=None)
    async with rt.ledger.engine.connect() as conn:
        card = await rate_card_version(conn, e.rate_card_version)
        rules = (await conn.execute(text(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE account_id = :a AND version < :v"
            " AND type IN ('BudgetSet', 'LimitSet') ORDER BY version"), {"a": account, "v": version})).all()
    lines: list[s.PriceLineOut] = []
    minimum_ucr = None
    if card is not None and e.operation in card.operations:
        p = price(card, e.operation, e.quantities)
        lines, minimum_ucr = render.price_lines(p), p.minimum_ucr
    exact = e.exact_cost
    if minimum_ucr and e.cost_ucr == minimum_ucr:
        rounding = f"exact {exact} µcr is below the session minimum: charged the minimum {minimum_ucr} µcr"
    elif "." in exact or "…" in exact:
        rounding = f"exact {exact} µcr rounded up to {e.cost_ucr} µcr (charges never round down)"
    else:
        rounding = f"exact {exact} µcr: no rounding needed"
    return s.ExplainOut(
        entry=entry, operation=e.operation, rate_card_version=e.rate_card_version, rates=lines,
        quantities=e.quantities, exact_cost=exact, **render.money_pair("minimum", minimum_ucr),
        charged=format_credits(e.cost_ucr), charged_ucr=e.cost_ucr, rounding=rounding,
        grants=render.draws(e), debt_added=format_credits(e.debt_added_ucr), debt_added_ucr=e.debt_added_ucr,
        limits_checked=_limits_in_force(e, [row_to_event(r) for r in rules]), gated=e.gated)


def _limits_in_force(e: UsageMetered, rules: list[Any]) -> list[dict[str, Any]]:
    """The budget and agent/member limits that applied to ``e`` (the latest setting before it)."""
    checked: list[dict[str, Any]] = [{"rule": "available_balance", "applies": e.gated,
                                      "note": "gated: refused unless the available balance covers the cost"
                                      if e.gated else "metered: never refused; a shortfall becomes debt"}]
    budget: BudgetSet | None = None
    limits: dict[tuple[str, str], LimitSet] = {}
    for r in rules:
        if isinstance(r, BudgetSet):
            budget = r
        elif isinstance(r, LimitSet):
            limits[(r.scope, r.subject)] = r
    if budget is not None and budget.monthly_limit_ucr is not None:
        checked.append({"rule": "monthly_budget", "limit": format_credits(budget.monthly_limit_ucr),
                        "limit_ucr": budget.monthly_limit_ucr, "hard_stop": budget.hard_stop,
                        "applies": e.gated and budget.hard_stop})
    for scope, subject in (("agent", e.attribution.agent), ("member", e.attribution.member)):
        lim = limits.get((scope, subject or ""))
        if subject and lim is not None:
            for period in ("per_run", "per_day", "per_month"):
                value = getattr(lim, f"{period}_ucr")
                if value is not None:
                    checked.append({"rule": f"{scope}_limit", "subject": subject, "period": period,
                                    "limit": format_credits(value), "limit_ucr": value, "applies": e.gated})
    return checked
