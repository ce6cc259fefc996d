"""Coupons (admin) and operator grants."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from ledger import commands as c
from ledger.api import render
from ledger.api import schemas as s
from ledger.api.body import JsonBodyRoute
from ledger.api.deps import RT, Admin, IdemHeader, Operator, idempotency_key, replayed

router = APIRouter(tags=["credits"], responses=s.ERRORS, route_class=JsonBodyRoute)


@router.post("/v1/accounts/{account}/coupons", status_code=status.HTTP_201_CREATED, response_model=s.GrantOut)
async def redeem_coupon(account: str, body: s.CouponIn, rt: RT, who: Admin, response: Response,
                        idem: IdemHeader = None) -> s.GrantOut:
    """Redeem a code for promotional credits; unknown, expired, used up or already redeemed: 422 with the reason."""
    outcome = await rt.ledger.execute(c.RedeemCoupon(
        account_id=account, code=body.code, idempotency_key=idempotency_key(idem, body.idempotency_key)))
    replayed(response, outcome.replayed)
    return render.grant(outcome.events)


@router.post("/v1/accounts/{account}/grants", status_code=status.HTTP_201_CREATED, response_model=s.GrantOut)
async def grant(account: str, body: s.GrantIn, rt: RT, who: Operator, response: Response,
                idem: IdemHeader = None) -> s.GrantOut:
    """An operator grant (promotion, refund, ...) with an optional expiry; pays any debt first."""
    amount = s.pick_money("amount", body.amount, body.amount_ucr)
    assert amount is not None
    outcome = await rt.ledger.execute(c.GrantCredits(
        account_id=account, amount_ucr=amount, source=body.source, expires_at=body.expires_at, reason=body.reason,
        idempotency_key=idempotency_key(idem, body.idempotency_key)))
    replayed(response, outcome.replayed)
    return render.grant(outcome.events)
