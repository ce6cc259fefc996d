"""Budget, per-agent / per-member limits and auto-refill (admin)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response

from ledger import commands as c
from ledger import rows
from ledger.api import schemas as s
from ledger.api.body import JsonBodyRoute
from ledger.api.deps import RT, Admin, IdemHeader, Reader, idempotency_key, replayed
from ledger.billing.payment_methods import open_card_setup
from ledger.events import BudgetSet, LimitSet
from ledger.money import format_credits
from ledger.payments import REFILL_BREAKER, AutoRefill

router = APIRouter(tags=["controls"], responses=s.ERRORS, route_class=JsonBodyRoute)


def _m(ucr: int | None) -> str | None:
    return None if ucr is None else format_credits(ucr)


@router.put("/v1/accounts/{account}/budget", response_model=s.BudgetOut)
async def set_budget(account: str, body: s.BudgetIn, rt: RT, who: Admin, response: Response,
                     idem: IdemHeader = None) -> s.BudgetOut:
    """Set the monthly budget (null clears it): warnings at warn/critical %, refusals past it with ``hard_stop``."""
    limit = s.pick_money("monthly_limit", body.monthly_limit, body.monthly_limit_ucr, required=False)
    outcome = await rt.ledger.execute(c.SetBudget(
        account_id=account, monthly_limit_ucr=limit, warn_pct=body.warn_pct, critical_pct=body.critical_pct,
        hard_stop=body.hard_stop, idempotency_key=idempotency_key(idem, body.idempotency_key)))
    replayed(response, outcome.replayed)
    e = next(e for e in outcome.events if isinstance(e, BudgetSet))
    spent = await rt.ledger.spent(account)
    return s.BudgetOut(monthly_limit=_m(e.monthly_limit_ucr), monthly_limit_ucr=e.monthly_limit_ucr,
                       warn_pct=e.warn_pct, critical_pct=e.critical_pct, hard_stop=e.hard_stop,
                       spent_this_month=format_credits(spent), spent_this_month_ucr=spent)


@router.put("/v1/accounts/{account}/limits/{scope}/{key}", response_model=s.LimitOut)
async def set_limit(account: str, scope: Literal["agent", "member"],
                    key: str, body: s.LimitIn, rt: RT, who: Admin, response: Response,
                    idem: IdemHeader = None) -> s.LimitOut:
    """Cap what one agent or member may spend per run, day and month (gated work past it is a 402)."""
    outcome = await rt.ledger.execute(c.SetLimit(
        account_id=account, scope=scope, subject=key,
        per_run_ucr=s.pick_money("per_run", body.per_run, body.per_run_ucr, required=False),
        per_day_ucr=s.pick_money("per_day", body.per_day, body.per_day_ucr, required=False),
        per_month_ucr=s.pick_money("per_month", body.per_month, body.per_month_ucr, required=False),
        idempotency_key=idempotency_key(idem, body.idempotency_key)))
    replayed(response, outcome.replayed)
    e = next(e for e in outcome.events if isinstance(e, LimitSet))
    return s.LimitOut(scope=e.scope, key=e.subject, per_run=_m(e.per_run_ucr), per_run_ucr=e.per_run_ucr,
                      per_day=_m(e.per_day_ucr), per_day_ucr=e.per_day_ucr, per_month=_m(e.per_month_ucr),
                      per_month_ucr=e.per_month_ucr)





@router.put("/v1/accounts/{account}/auto-refill", response_model=s.AutoRefillOut)
async def set_auto_refill(account: str, body: s.AutoRefillIn, rt: RT, who: Admin, response: Response,
                          idem: IdemHeader = None) -> s.AutoRefillOut:
    """Below ``threshold``, buy ``amount`` with the saved payment method, once per crossing, at most
    ``daily_cap`` a day; three declines in a row stop refills until the payment method changes."""
    threshold = s.pick_money("threshold", body.threshold, body.threshold_ucr)
    amount = s.pick_money("amount", body.amount, body.amount_ucr)
    assert threshold is not None and amount is not None  # required
    outcome = await rt.ledger.execute(c.ConfigureAutoRefill(
        account_id=account, enabled=body.enabled, threshold_ucr=threshold, amount_ucr=amount,
        daily_cap_ucr=s.pick_money("daily_cap", body.daily_cap, body.daily_cap_ucr, required=False),
        runout_hours=body.runout_hours, idempotency_key=idempotency_key(idem, body.idempotency_key)))
    replayed(response, outcome.replayed)
    return _auto_refill(rows.auto_refill((await rt.ledger.account(account)).settings))


@router.post("/v1/accounts/{account}/auto-refill/payment-method", response_model=s.CardSetupOut)
async def save_card(account: str, body: s.CardSetupIn, rt: RT, who: Admin, idem: IdemHeader = None) -> s.CardSetupOut:
    """A Stripe setup-mode Checkout where the customer saves the card refills charge; the card is
    the account's once Stripe's webhook says so (a new card also restarts refills the breaker
    stopped). The same ``Idempotency-Key`` returns the same session."""
    session = await open_card_setup(rt.ledger, rt.gateway, account, success_url=body.success_url,
                                    cancel_url=body.cancel_url,
                                    request_key=idempotency_key(idem, body.idempotency_key))
    return s.CardSetupOut(checkout_url=str(session["url"]), session_id=str(session["id"]))


@router.get("/v1/accounts/{account}/auto-refill", response_model=s.AutoRefillOut)
async def get_auto_refill(account: str, rt: RT, who: Reader) -> s.AutoRefillOut:
    """The auto-refill rule, whether a card is saved, the breaker and the last refill asked."""
    return _auto_refill(rows.auto_refill((await rt.ledger.account(account)).settings))


def _auto_refill(r: AutoRefill) -> s.AutoRefillOut:
    last = r.last
    return s.AutoRefillOut(
        enabled=r.enabled, threshold=format_credits(r.threshold_ucr), threshold_ucr=r.threshold_ucr,
        amount=format_credits(r.amount_ucr), amount_ucr=r.amount_ucr, price_cents=r.cents,
        daily_cap=_m(r.daily_cap_ucr), daily_cap_ucr=r.daily_cap_ucr, runout_hours=r.runout_hours,
        payment_method_saved=r.payment_method is not None, failures=r.failures, breaker_after=REFILL_BREAKER,
        breaker_open=r.breaker_open, last_request=None if last is None else s.RefillRequestOut(
            crossing=last.crossing, credits=format_credits(last.credits_ucr), credits_ucr=last.credits_ucr,
            cents=last.cents, trigger=last.trigger, status=last.status, requested_at=last.requested_at))
