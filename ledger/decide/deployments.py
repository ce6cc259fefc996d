"""Deployments: instances charged by the hour while they run, paused when unpaid or in debt."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger import commands as c
from ledger.decide.context import Builder
from ledger.decide.credits import expire_due
from ledger.decide.spending import check_spend, debit
from ledger.errors import InvalidRequest, InvalidState, NotFound, PaymentRequired
from ledger.events import Attribution, DeploymentPaused, DeploymentResumed, DeploymentStarted, DeploymentStopped
from ledger.rates import Price, RateCard, price
from ledger.state import hour_due_at


def _hour_price(card: RateCard, instance_type: str) -> Price:
    op = card.operation(instance_type)
    if op.kind != "instance":
        raise InvalidRequest(f"{instance_type!r} is not an instance type")
    return price(card, instance_type, {op.unit: 1})


def _deployment(b: Builder, deployment_id: str, *statuses: str) -> None:
    d = b.state.deployments.get(deployment_id)
    if d is None:
        raise NotFound(f"no deployment {deployment_id!r}")
    if d.status not in statuses:
        raise InvalidState(f"deployment {deployment_id!r} is {d.status}")


def _start(b: Builder, cmd: c.StartDeployment) -> None:
    existing = b.state.deployments.get(cmd.deployment_id)
    if existing is not None:
        raise InvalidState(f"deployment {cmd.deployment_id!r} exists ({existing.status})")
    p = _hour_price(b.ctx.card, cmd.instance_type)
    expire_due(b)
    attribution = Attribution(deployment=cmd.deployment_id)
    check_spend(b.state, p.amount_ucr, attribution, b.ctx.now, b.ctx.card)
    b.emit(DeploymentStarted, deployment_id=cmd.deployment_id, instance_type=cmd.instance_type,
           hourly_ucr=p.amount_ucr)
    debit(b, p, attribution=attribution, gated=True, deployment_id=cmd.deployment_id, hour_index=0)


def _charge_hour(b: Builder, cmd: c.ChargeDeploymentHour) -> None:
    _deployment(b, cmd.deployment_id, "running")
    d = b.state.deployments[cmd.deployment_id]
    if cmd.hour_index < d.hours_charged:
        raise InvalidState(f"hour {cmd.hour_index} of {d.deployment_id!r} is already charged")
    if cmd.hour_index > d.hours_charged:
        raise InvalidState(f"hour {d.hours_charged} of {d.deployment_id!r} must be charged first")
    assert d.segment_started_at is not None
    due = hour_due_at(d.segment_started_at, d.used, cmd.hour_index)
    if due > b.ctx.now:
        raise InvalidState(f"hour {cmd.hour_index} of {d.deployment_id!r} is not due until {due.isoformat()}")
    p = _hour_price(b.ctx.card, d.instance_type)
    expire_due(b)
    attribution = Attribution(deployment=d.deployment_id)
    try:
        check_spend(b.state, p.amount_ucr, attribution, b.ctx.now, b.ctx.card)
    except PaymentRequired as refused:
        if not cmd.pause_if_unpaid:
            raise
        b.emit(DeploymentPaused, deployment_id=d.deployment_id, reason=refused.reason)
        return
    # Dated when it fell due, but never before this running segment: time used before a pause
    # that was not charged then (a scheduler that was down) is charged as the segment starts.
    debit(b, p, attribution=attribution, gated=True, occurred_at=max(due, d.segment_started_at),
          deployment_id=d.deployment_id, hour_index=cmd.hour_index)


def _charge_used_hours(b: Builder, deployment_id: str) -> None:
    """Before a running deployment's clock stops (a stop or a pause): charge every hour due by now
    that no scheduler charged (it was down or behind), each with its own hour index, dated when it
    fell due.

    The running time was used, so these are metered: never refused for lack of credits, the unpaid
    rest becomes debt. ``hours_charged`` is the one count this and ``ChargeDeploymentHour`` advance,
    under the account's lock: a scheduler's charge of the same hour that lands first leaves it out
    here, and one that lands after is refused (the deployment is no longer running, or the hour is
    already charged), so each hour index is charged once.
    """
    d = b.state.deployments[deployment_id]
    due = d.hours_due(b.ctx.now)
    if not due:
        return
    assert d.segment_started_at is not None  # running
    p = _hour_price(b.ctx.card, d.instance_type)
    expire_due(b)
    attribution = Attribution(deployment=d.deployment_id)
    for n in due:
        # As ``_charge_hour`` dates it: when it fell due, never before this running segment.
        when = max(hour_due_at(d.segment_started_at, d.used, n), d.segment_started_at)
        debit(b, p, attribution=attribution, gated=False, occurred_at=when, deployment_id=d.deployment_id,
              hour_index=n)


def _stop(b: Builder, cmd: c.StopDeployment) -> None:
    _deployment(b, cmd.deployment_id, "running", "paused")
    # A paused deployment's clock stopped at the pause, which charged what was due then (or its
    # hour was refused, which is what paused it): nothing more is owed.
    if b.state.deployments[cmd.deployment_id].status == "running":
        _charge_used_hours(b, cmd.deployment_id)
    b.emit(DeploymentStopped, deployment_id=cmd.deployment_id)


def _pause(b: Builder, cmd: c.PauseDeployment) -> None:
    _deployment(b, cmd.deployment_id, "running")
    _charge_used_hours(b, cmd.deployment_id)
    b.emit(DeploymentPaused, deployment_id=cmd.deployment_id, reason=cmd.reason)


def _resume(b: Builder, cmd: c.ResumeDeployment) -> None:
    _deployment(b, cmd.deployment_id, "paused")
    d = b.state.deployments[cmd.deployment_id]
    if d.used < d.paid:
        # Paid time is left: the clock runs on, and the next hour is charged when it runs out.
        b.emit(DeploymentResumed, deployment_id=d.deployment_id)
        return
    p = _hour_price(b.ctx.card, d.instance_type)
    expire_due(b)
    attribution = Attribution(deployment=d.deployment_id)
    check_spend(b.state, p.amount_ucr, attribution, b.ctx.now, b.ctx.card)
    b.emit(DeploymentResumed, deployment_id=d.deployment_id)
    debit(b, p, attribution=attribution, gated=True, deployment_id=d.deployment_id,
          hour_index=d.hours_charged)


def _pause_for_debt(b: Builder, cmd: c.PauseForDebt) -> None:
    if b.state.debt_ucr <= 0:
        return
    for d in sorted(b.state.deployments.values(), key=lambda d: d.deployment_id):
        if d.status == "running":
            _charge_used_hours(b, d.deployment_id)
            b.emit(DeploymentPaused, deployment_id=d.deployment_id, reason="in_debt")


#: The commands decided here.
HANDLERS: dict[type[c.Command], Callable[[Builder, Any], None]] = {
    c.StartDeployment: _start,
    c.ChargeDeploymentHour: _charge_hour,
    c.StopDeployment: _stop,
    c.PauseDeployment: _pause,
    c.ResumeDeployment: _resume,
    c.PauseForDebt: _pause_for_debt,
}
