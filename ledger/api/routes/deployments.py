"""Deployments: start (gated, first hour charged), stop, pause, resume (gated once the paid time is used), list."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from ledger import commands as c
from ledger.api import schemas as s
from ledger.api.body import JsonBodyRoute
from ledger.api.deps import RT, IdemHeader, Member, Reader, idempotency_key, replayed
from ledger.errors import NotFound, PaymentRequired
from ledger.money import format_credits
from ledger.views import DeploymentView

router = APIRouter(tags=["deployments"], responses=s.ERRORS, route_class=JsonBodyRoute)


def _out(d: DeploymentView) -> s.DeploymentOut:
    return s.DeploymentOut(
        id=d.deployment_id, instance_type=d.instance_type, status=d.status, hourly=format_credits(d.hourly_ucr),
        hourly_ucr=d.hourly_ucr, hours_charged=d.hours_charged, credits=format_credits(d.credits_ucr),
        credits_ucr=d.credits_ucr, paused_reason=d.paused_reason, started_at=d.started_at)


async def _one(rt: RT, account: str, deployment_id: str) -> s.DeploymentOut:
    found = await rt.ledger.deployments(account, deployment_id)
    if not found:
        raise NotFound(f"no deployment {deployment_id!r}")
    return _out(found[0])


async def _run(rt: RT, cmd: c.Command, response: Response) -> None:
    try:
        outcome = await rt.ledger.execute(cmd)
    except PaymentRequired as refused:
        rt.metrics.payment_required.labels(refused.reason).inc()
        raise
    replayed(response, outcome.replayed)


@router.post("/v1/accounts/{account}/deployments", status_code=status.HTTP_201_CREATED,
             response_model=s.DeploymentOut,
             responses=s.PAYMENT_REQUIRED)
async def start(account: str, body: s.DeploymentIn, rt: RT, who: Member, response: Response,
                idem: IdemHeader = None) -> s.DeploymentOut:
    """Start a deployment: gated, its first hour charged now; later hours are charged at their start."""
    await _run(rt, c.StartDeployment(account_id=account, deployment_id=body.deployment_id,
                                     instance_type=body.instance_type,
                                     idempotency_key=idempotency_key(idem, body.idempotency_key)), response)
    return await _one(rt, account, body.deployment_id)


@router.get("/v1/accounts/{account}/deployments", response_model=s.DeploymentList)
async def list_deployments(account: str, rt: RT, who: Reader) -> s.DeploymentList:
    """The account's deployments with hours charged and credits spent, newest first."""
    return s.DeploymentList(data=[_out(d) for d in await rt.ledger.deployments(account)])


@router.post("/v1/accounts/{account}/deployments/{deployment_id}/stop", response_model=s.DeploymentOut)
async def stop(account: str, deployment_id: str, rt: RT, who: Member, response: Response,
               body: s.DeploymentActionIn | None = None, idem: IdemHeader = None) -> s.DeploymentOut:
    """Stop for good (the current hour was paid at its start)."""
    await _run(rt, c.StopDeployment(account_id=account, deployment_id=deployment_id,
                                    idempotency_key=idempotency_key(idem, body.idempotency_key if body else None)),
               response)
    return await _one(rt, account, deployment_id)


@router.post("/v1/accounts/{account}/deployments/{deployment_id}/pause", response_model=s.DeploymentOut)
async def pause(account: str, deployment_id: str, rt: RT, who: Member, response: Response,
                body: s.PauseIn | None = None, idem: IdemHeader = None) -> s.DeploymentOut:
    """Pause: the clock stops, and the paid time left is kept for the resume."""
    await _run(rt, c.PauseDeployment(account_id=account, deployment_id=deployment_id,
                                     reason=body.reason if body else "paused_by_user",
                                     idempotency_key=idempotency_key(idem, body.idempotency_key if body else None)),
               response)
    return await _one(rt, account, deployment_id)


@router.post("/v1/accounts/{account}/deployments/{deployment_id}/resume", response_model=s.DeploymentOut,
             responses=s.PAYMENT_REQUIRED)
async def resume(account: str, deployment_id: str, rt: RT, who: Member, response: Response,
                 body: s.DeploymentActionIn | None = None, idem: IdemHeader = None) -> s.DeploymentOut:
    """Resume: free while paid time is left; once it is used up, the next hour is charged now (gated)."""
    await _run(rt, c.ResumeDeployment(account_id=account, deployment_id=deployment_id,
                                      idempotency_key=idempotency_key(idem, body.idempotency_key if body else None)),
               response)
    return await _one(rt, account, deployment_id)
