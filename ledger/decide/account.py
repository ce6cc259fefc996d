"""The account itself: opening it, its plan, budget and limits, its API keys, and the alerts it raises."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from ledger import commands as c
from ledger.alerts import AlertSpec
from ledger.alerts import facts as alert_facts
from ledger.decide.context import Builder
from ledger.decide.credits import allowance
from ledger.errors import AccountExists, InvalidRequest, InvalidState
from ledger.events import (
    AccountOpened,
    AlertRaised,
    ApiKeyCreated,
    ApiKeyRevoked,
    BudgetSet,
    CreditsGranted,
    LimitSet,
    PlanChanged,
)
from ledger.money import credits_to_exact_ucr, floor_ucr, format_credits


def open_account(b: Builder, cmd: c.OpenAccount) -> None:
    if b.state.exists:
        raise AccountExists(f"account {cmd.account_id!r} already exists")
    card = b.ctx.card
    plan = card.plan(cmd.plan or card.default_plan)
    b.emit(AccountOpened, name=cmd.name, plan=plan.id)
    signup = floor_ucr(credits_to_exact_ucr(plan.signup_credits))
    if signup:
        expires = (b.ctx.now + timedelta(days=plan.signup_credits_expire_days)
                   if plan.signup_credits_expire_days else None)
        b.emit(CreditsGranted, amount_ucr=signup, grant_id=b.ctx.new_id(), source="promotion",
               expires_at=expires, reason="signup")
    allowance(b, 0)


def _plan(b: Builder, cmd: c.ChangePlan) -> None:
    new = b.ctx.card.plan(cmd.plan)
    if new.id == b.state.plan:
        raise InvalidState(f"account is already on plan {new.id!r}")
    b.emit(PlanChanged, old_plan=b.state.plan, new_plan=new.id)


def _budget(b: Builder, cmd: c.SetBudget) -> None:
    if cmd.warn_pct >= cmd.critical_pct:
        raise InvalidRequest("warn_pct must be below critical_pct")
    b.emit(BudgetSet, monthly_limit_ucr=cmd.monthly_limit_ucr, warn_pct=cmd.warn_pct,
           critical_pct=cmd.critical_pct, hard_stop=cmd.hard_stop)


def _limit(b: Builder, cmd: c.SetLimit) -> None:
    b.emit(LimitSet, scope=cmd.scope, subject=cmd.subject, per_run_ucr=cmd.per_run_ucr,
           per_day_ucr=cmd.per_day_ucr, per_month_ucr=cmd.per_month_ucr)


def _raise_alert(b: Builder, cmd: c.RaiseAlert) -> None:
    if cmd.kind in ("daily_summary", "weekly_summary"):
        if cmd.spent_ucr is None:
            raise InvalidRequest("a summary needs spent_ucr")
        what = "yesterday" if cmd.kind == "daily_summary" else "last week"
        b.emit(AlertRaised, kind=cmd.kind, scope=cmd.scope, subject=cmd.subject, period=cmd.period,
               threshold_pct=0, level="info", message=f"{format_credits(cmd.spent_ucr)} credits spent {what}",
               spent_ucr=cmd.spent_ucr, limit_ucr=0)
        return
    spec = AlertSpec(cmd.kind, cmd.scope, cmd.subject, cmd.period, cmd.threshold_pct)
    found = alert_facts(b.state, spec, b.ctx.card)
    if found is None:
        # Refused, so no key is kept: the alert can still fire later in the same period.
        raise InvalidState(f"alert {spec.key} does not hold now")
    b.emit(AlertRaised, kind=cmd.kind, scope=cmd.scope, subject=cmd.subject, period=cmd.period,
           threshold_pct=cmd.threshold_pct, level=found.level, message=found.message, spent_ucr=found.spent_ucr,
           limit_ucr=found.limit_ucr)


#: The kind of the alert a payment that credited nothing raises.
PAYMENT_PROBLEM_ALERT = "payment_problem"


def _payment_problem(b: Builder, cmd: c.NotifyPaymentProblem) -> None:
    # Keyed like every alert (scope, subject, period): once per Stripe object and reason.
    b.emit(AlertRaised, kind=PAYMENT_PROBLEM_ALERT, scope="payment", subject=cmd.reference, period=cmd.reason,
           threshold_pct=0, level="warning", message=cmd.message, spent_ucr=0, limit_ucr=0)


def _create_key(b: Builder, cmd: c.CreateApiKey) -> None:
    b.emit(ApiKeyCreated, key_id=cmd.key_id, prefix=cmd.prefix, role=cmd.role, name=cmd.name)


def _revoke_key(b: Builder, cmd: c.RevokeApiKey) -> None:
    # Whether the key exists and belongs here is checked against ``api_keys`` by the service;
    # the store's update only ever touches this account's unrevoked key.
    b.emit(ApiKeyRevoked, key_id=cmd.key_id)


#: The commands decided here.
HANDLERS: dict[type[c.Command], Callable[[Builder, Any], None]] = {
    c.ChangePlan: _plan,
    c.SetBudget: _budget,
    c.SetLimit: _limit,
    c.RaiseAlert: _raise_alert,
    c.NotifyPaymentProblem: _payment_problem,
    c.CreateApiKey: _create_key,
    c.RevokeApiKey: _revoke_key,
}
