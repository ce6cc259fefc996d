"""Events and service results -> response bodies. Pure: the same events give the same body, so an
idempotent replay (which returns the first command's events) renders the first response again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.api import schemas as s
from ledger.events import (
    AllowanceGranted,
    CouponApplied,
    CreditsGranted,
    CreditsPurchased,
    CreditsReleased,
    CreditsReserved,
    DebtSettled,
    Event,
    RefundIssued,
    UsageMetered,
    event_data,
)
from ledger.money import credits_to_exact_ucr, floor_ucr, format_cents, format_credits
from ledger.rates import Pack, Price
from ledger.views import Account, AccountSummary, Balance, Estimate

_OPERATION = {
    "CreditsPurchased": "purchase",
    "CouponApplied": "coupon",
    "CreditsGranted": "grant",
    "AllowanceGranted": "allowance",
    "RefundIssued": "refund",
    "GrantExpired": "expiry",
    "DebtSettled": "debt_settlement",
    "CreditsReserved": "reservation",
    "CreditsReleased": "release",
    "PurchaseDisputed": "dispute",
    "DisputeClosed": "dispute_closed",
}
_ENVELOPE = {"event_id", "account_id", "occurred_at", "recorded_at", "idempotency_key", "amount_ucr",
             "balance_after_ucr", "schema_version", "type"}


def _m(ucr: int | None) -> str | None:
    return None if ucr is None else format_credits(ucr)


def with_credits(data: Any) -> Any:
    """``data`` (JSON-ready) with every ``<name>_ucr`` amount at any depth joined by ``<name>``,
    its credits string: API.md's rule that every amount in a response appears twice. For free-form
    parts of a body (an entry's ``details``, an account's ``settings``); typed models name both."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key.endswith("_ucr") and (value is None or type(value) is int):
                out[key[:-4]] = _m(value)
            out[key] = with_credits(value)
        return out
    if isinstance(data, list | tuple):
        return [with_credits(v) for v in data]
    return data


def entry(version: int, e: Event) -> s.Entry:
    """One ledger entry: signed amount (< 0 debit), balance after, and the event's own fields
    (their amounts in both forms)."""
    details = with_credits(event_data(e))
    attribution = details.pop("attribution", None) or {}
    return s.Entry(
        id=e.event_id, version=version, created_at=e.recorded_at, occurred_at=e.occurred_at, type=e.type,
        operation=e.operation if isinstance(e, UsageMetered) else _OPERATION.get(e.type),
        amount=format_credits(e.amount_ucr), amount_ucr=e.amount_ucr,
        balance_after=format_credits(e.balance_after_ucr), balance_after_ucr=e.balance_after_ucr,
        attribution={k: v for k, v in attribution.items() if v is not None},
        idempotency_key=e.idempotency_key, details=details)


def draws(e: UsageMetered | DebtSettled) -> list[s.Draw]:
    return [s.Draw(grant_id=d.grant_id, source=d.source, amount=format_credits(d.amount_ucr),
                   amount_ucr=d.amount_ucr) for d in e.draws]


def last_of(events: Sequence[Event], cls: Any) -> Any:
    """The last event of type ``cls`` a command produced (the one its response is about)."""
    for e in reversed(events):
        if isinstance(e, cls):
            return e
    raise LookupError(f"no {cls.__name__} among {[e.type for e in events]}")


def charge(events: Sequence[Event]) -> s.ChargeOut:
    u: UsageMetered = last_of(events, UsageMetered)
    return s.ChargeOut(
        id=u.event_id, operation=u.operation, quantities=u.quantities, amount=format_credits(u.cost_ucr),
        amount_ucr=u.cost_ucr, balance_after=format_credits(u.balance_after_ucr),
        balance_after_ucr=u.balance_after_ucr, rate_card_version=u.rate_card_version, grants=draws(u),
        debt_added=format_credits(u.debt_added_ucr), debt_added_ucr=u.debt_added_ucr, created_at=u.recorded_at)


def reservation(events: Sequence[Event]) -> s.ReservationOut:
    r: CreditsReserved = last_of(events, CreditsReserved)
    return s.ReservationOut(id=r.reservation_id, operation=r.operation, held=format_credits(r.held_ucr),
                            held_ucr=r.held_ucr, expires_at=r.expires_at,
                            balance_after=format_credits(r.balance_after_ucr), balance_after_ucr=r.balance_after_ucr)


def released(events: Sequence[Event]) -> s.ReleaseOut:
    r: CreditsReleased = last_of(events, CreditsReleased)
    return s.ReleaseOut(reservation_id=r.reservation_id, released=format_credits(r.released_ucr),
                        released_ucr=r.released_ucr, balance_after=format_credits(r.balance_after_ucr),
                        balance_after_ucr=r.balance_after_ucr)


def grant(events: Sequence[Event]) -> s.GrantOut:
    g = last_of(events, CreditsGranted | CouponApplied | CreditsPurchased | AllowanceGranted | RefundIssued)
    settled = sum(e.settled_ucr for e in events if isinstance(e, DebtSettled))
    last = events[-1]
    return s.GrantOut(
        grant_id=g.grant_id, source=getattr(g, "source", "promotion"), amount=format_credits(g.amount_ucr),
        amount_ucr=g.amount_ucr, expires_at=getattr(g, "expires_at", None),
        balance_after=format_credits(last.balance_after_ucr), balance_after_ucr=last.balance_after_ucr,
        code=getattr(g, "code", None), debt_settled=format_credits(settled), debt_settled_ucr=settled)


def price_lines(p: Price) -> list[s.PriceLineOut]:
    from ledger.money import fraction_to_decimal_str

    return [s.PriceLineOut(dimension=ln.dimension, quantity=ln.quantity, credits_per=str(ln.credits), per=ln.per,
                           exact_ucr=fraction_to_decimal_str(ln.exact_ucr)) for ln in p.lines]


def estimate(est: Estimate) -> s.EstimateOut:
    p = est.price
    return s.EstimateOut(
        operation=p.operation, quantities={ln.dimension: ln.quantity for ln in p.lines},
        total=format_credits(p.amount_ucr), total_ucr=p.amount_ucr, sufficient=est.sufficient,
        remaining=format_credits(est.remaining_ucr), remaining_ucr=est.remaining_ucr, reason=est.reason,
        rate_card_version=p.rate_card_version, lines=price_lines(p))


def balance(b: Balance, recent: Sequence[tuple[int, Event]], runout_at: Any) -> s.BalanceOut:
    src = {k: b.by_source.get(k, 0) for k in ("allowance", "purchase", "promotion", "refund")}
    return s.BalanceOut(
        account_id=b.account_id, plan=b.plan, status=b.status,
        balance=format_credits(b.balance_ucr), balance_ucr=b.balance_ucr,
        available=format_credits(b.available_ucr), available_ucr=b.available_ucr,
        reserved=format_credits(b.reserved_ucr), reserved_ucr=b.reserved_ucr,
        debt=format_credits(b.debt_ucr), debt_ucr=b.debt_ucr,
        by_source=s.SourceAmounts(**{k: format_credits(v) for k, v in src.items()},
                                  **{f"{k}_ucr": v for k, v in src.items()}),
        monthly_allowance=format_credits(b.monthly_allowance_ucr), monthly_allowance_ucr=b.monthly_allowance_ucr,
        resets_at=b.resets_at, runout_at=runout_at, version=b.version,
        recent=[entry(v, e) for v, e in recent])


def money_pair(name: str, ucr: int | None) -> dict[str, Any]:
    """``<name>`` and ``<name>_ucr`` of one amount, for a typed response model."""
    return {name: _m(ucr), f"{name}_ucr": ucr}


def pack(p: Pack, currency: str) -> s.PackOut:
    """A pack on sale: credits and bonus in both forms; its price is money (cents), not credits."""
    return s.PackOut(id=p.id, **money_pair("credits", floor_ucr(credits_to_exact_ucr(p.credits))),
                     **money_pair("bonus", floor_ucr(credits_to_exact_ucr(p.bonus))),
                     price_cents=p.price_cents, price=format_cents(p.price_cents), currency=currency)


def account(a: Account) -> s.AccountOut:
    return s.AccountOut(id=a.account_id, name=a.name, plan=a.plan, status=a.status,
                        created_at=a.opened_at, settings=with_credits(dict(a.settings)))


def account_summary(a: AccountSummary) -> s.AccountSummaryOut:
    available = a.balance_ucr - a.reserved_ucr
    return s.AccountSummaryOut(
        id=a.account_id, name=a.name, plan=a.plan, status=a.status, created_at=a.opened_at,
        balance=format_credits(a.balance_ucr), balance_ucr=a.balance_ucr, available=format_credits(available),
        available_ucr=available, reserved=format_credits(a.reserved_ucr), reserved_ucr=a.reserved_ucr,
        debt=format_credits(a.debt_ucr), debt_ucr=a.debt_ucr)
