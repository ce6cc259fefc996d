"""Pricing, gated charges, metered usage batches, estimates and reservations."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response, status

from ledger import commands as c
from ledger import intake
from ledger.api import render
from ledger.api import schemas as s
from ledger.api.body import JsonBodyRoute
from ledger.api.deps import RT, IdemHeader, Member, Reader, idempotency_key, replayed
from ledger.errors import NotFound, PaymentRequired
from ledger.events import Attribution
from ledger.money import format_credits
from ledger.store import Outcome

router = APIRouter(tags=["usage"], responses=s.ERRORS, route_class=JsonBodyRoute)


def attribution(a: s.AttributionIn | None) -> Attribution:
    return Attribution(**a.model_dump()) if a is not None else Attribution()


async def _run(rt: RT, cmd: c.Command) -> Outcome:
    try:
        return await rt.ledger.execute(cmd)
    except PaymentRequired as refused:
        rt.metrics.payment_required.labels(refused.reason).inc()
        raise


@router.post("/v1/accounts/{account}/estimate", response_model=s.EstimateOut)
async def estimate(account: str, body: s.EstimateIn, rt: RT, who: Reader) -> s.EstimateOut:
    """What an operation would cost and whether the account could pay it now. Never 402."""
    est = await rt.ledger.estimate(account, body.operation, quantity=body.quantity, quantities=body.quantities,
                                   attribution=attribution(body.attribution))
    return render.estimate(est)


@router.post("/v1/accounts/{account}/charges", status_code=status.HTTP_201_CREATED, response_model=s.ChargeOut,
             responses=s.PAYMENT_REQUIRED)
async def charge(account: str, body: s.UsageIn, rt: RT, who: Member, response: Response,
                 idem: IdemHeader = None) -> s.ChargeOut:
    """A gated charge: 201 with the grants it drew, or 402 with required/remaining/reason/upgrade_url."""
    outcome = await _run(rt, c.Charge(
        account_id=account, operation=body.operation, quantity=body.quantity, quantities=body.quantities,
        attribution=attribution(body.attribution), idempotency_key=idempotency_key(idem, body.idempotency_key)))
    replayed(response, outcome.replayed)
    return render.charge(outcome.events)


@router.post("/v1/usage", response_model=s.UsageBatchOut)
async def record_usage(body: s.UsageBatchIn, rt: RT, who: Member) -> s.UsageBatchOut:
    """Metered usage (never 402), up to 1,000 items, each with its own idempotency key.

    Each item is checked on its own: a bad item is ``rejected`` with a problem document and
    never fails the others; an item not recorded for a transient reason is ``failed`` (retry it
    with the same key). When the database is unreachable for the whole batch: 503 with
    ``Retry-After``. An account key may meter only its own account.
    """
    results = await intake.record_usage(rt.ledger, body.events, only_account=who.account_id)
    return s.UsageBatchOut(results=[
        s.UsageResult(idempotency_key=r.idempotency_key, status=r.status,
                      id=r.usage.event_id if r.usage else None,
                      amount=format_credits(r.usage.cost_ucr) if r.usage else None,
                      amount_ucr=r.usage.cost_ucr if r.usage else None,
                      error=r.error.problem() if r.error else None)
        for r in results])


@router.post("/v1/accounts/{account}/reservations", status_code=status.HTTP_201_CREATED,
             response_model=s.ReservationOut,
             responses=s.PAYMENT_REQUIRED)
async def reserve(account: str, body: s.ReservationIn, rt: RT, who: Member, response: Response,
                  idem: IdemHeader = None) -> s.ReservationOut:
    """Hold credits for a long run (gated). Settle charges what was used; the rest is released."""
    amount = s.pick_money("amount", body.amount, body.amount_ucr, required=False)
    cmd = c.Reserve(account_id=account, operation=body.operation, quantity=body.quantity,
                    quantities=body.quantities, amount_ucr=amount, attribution=attribution(body.attribution),
                    idempotency_key=idempotency_key(idem, body.idempotency_key),
                    **({"ttl_s": body.ttl_s} if body.ttl_s is not None else {}))
    outcome = await _run(rt, cmd)
    replayed(response, outcome.replayed)
    return render.reservation(outcome.events)


@router.post("/v1/accounts/{account}/reservations/{reservation_id}/settle", response_model=s.SettleOut)
async def settle(account: str, reservation_id: str, body: s.SettleIn, rt: RT, who: Member, response: Response,
                 idem: IdemHeader = None) -> s.SettleOut:
    """Charge what was used against the hold; the rest goes back as a release."""
    outcome = await _run(rt, c.Settle(
        account_id=account, reservation_id=_uuid(reservation_id), quantity=body.quantity,
        quantities=body.quantities, attribution=attribution(body.attribution),
        idempotency_key=idempotency_key(idem, body.idempotency_key)))
    replayed(response, outcome.replayed)
    rel = render.released(outcome.events)
    return s.SettleOut(reservation_id=rel.reservation_id, charge=render.charge(outcome.events),
                       released=rel.released, released_ucr=rel.released_ucr)


@router.post("/v1/accounts/{account}/reservations/{reservation_id}/release", response_model=s.ReleaseOut)
async def release(account: str, reservation_id: str, rt: RT, who: Member, response: Response,
                  body: s.DeploymentActionIn | None = None, idem: IdemHeader = None) -> s.ReleaseOut:
    """Release a hold entirely."""
    outcome = await _run(rt, c.Release(
        account_id=account, reservation_id=_uuid(reservation_id),
        idempotency_key=idempotency_key(idem, body.idempotency_key if body else None)))
    replayed(response, outcome.replayed)
    return render.released(outcome.events)


def _uuid(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise NotFound(f"no reservation {value!r}") from None
