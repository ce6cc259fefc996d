"""Read-model rows -> response bodies (history and activities)."""

from __future__ import annotations

from ledger.api.render import with_credits
from ledger.api.schemas import history as h
from ledger.money import format_credits
from projections.queries.activities import Activity
from projections.queries.history import DeploymentUsage, Execution

_ATTRIBUTION = ("member", "agent", "flow", "run", "node")


def execution(e: Execution) -> h.ExecutionOut:
    attribution = {k: v for k in _ATTRIBUTION if (v := getattr(e, k)) is not None}
    if e.execution_id != str(e.entry_id):
        attribution["execution"] = e.execution_id
    if e.deployment_id is not None:
        attribution["deployment"] = e.deployment_id
    return h.ExecutionOut(
        execution_id=e.execution_id, entry_id=e.entry_id, version=e.version, created_at=e.occurred_at,
        operation=e.operation, machine_type=e.machine_type, duration_s=e.duration_s, quantities=e.quantities,
        credits=format_credits(e.cost_ucr), credits_ucr=e.cost_ucr, debt_added=format_credits(e.debt_added_ucr),
        debt_added_ucr=e.debt_added_ucr, gated=e.gated, rate_card_version=e.rate_card_version,
        attribution=attribution, deployment_id=e.deployment_id, hour_index=e.hour_index,
        reservation_id=e.reservation_id)


def deployment(d: DeploymentUsage) -> h.DeploymentHistoryOut:
    return h.DeploymentHistoryOut(deployment_id=d.deployment_id, machine_type=d.instance_type, hours=d.hours,
                                  credits=format_credits(d.credits_ucr), credits_ucr=d.credits_ucr,
                                  first_at=d.first_at, last_at=d.last_at)


def activity(a: Activity) -> h.ActivityOut:
    return h.ActivityOut(
        id=a.entry_id, version=a.version, created_at=a.occurred_at, kind=a.kind, operation=a.operation,
        amount=format_credits(a.amount_ucr), amount_ucr=a.amount_ucr,
        balance_after=format_credits(a.balance_after_ucr), balance_after_ucr=a.balance_after_ucr,
        execution_id=a.execution_id, reservation_id=a.reservation_id, detail=with_credits(a.detail))
