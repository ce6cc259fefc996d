"""The account's plan (admin): bought, changed or cancelled through Stripe. The work is in
``ledger.billing.plans``."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from ledger.api import schemas as s
from ledger.api.body import JsonBodyRoute
from ledger.api.deps import RT, Admin, IdemHeader, idempotency_key
from ledger.api.schemas.plans import PlanIn, PlanOut
from ledger.billing.plans import PENDING, change_plan

router = APIRouter(tags=["billing"], responses=s.ERRORS, route_class=JsonBodyRoute)


@router.put("/v1/accounts/{account}/plan", response_model=PlanOut,
            responses={status.HTTP_202_ACCEPTED: {"model": PlanOut, "description": "Stripe changes the plan later"}})
async def put_plan(account: str, body: PlanIn, rt: RT, who: Admin, response: Response,
                   idem: IdemHeader = None) -> PlanOut:
    """Move the account to ``plan``. A paid plan opens a subscription-mode Checkout (``checkout_url``);
    with a live subscription the new price applies from the period's end; the free plan cancels
    the subscription at the period's end. 202 while Stripe has yet to make the change; an unknown
    plan is a 422 and Stripe is not called."""
    done = await change_plan(rt.ledger, rt.gateway, account, body.plan, success_url=body.success_url,
                             cancel_url=body.cancel_url, request_key=idempotency_key(idem, body.idempotency_key))
    if done.outcome in PENDING:
        response.status_code = status.HTTP_202_ACCEPTED
    return PlanOut(status=done.outcome, plan=done.plan, current_plan=done.current_plan,
                   checkout_url=done.checkout_url, session_id=done.session_id,
                   stripe_subscription=done.stripe_subscription, effective_at=done.effective_at)
