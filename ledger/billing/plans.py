"""Changing an account's plan through Stripe (``PUT /v1/accounts/{account}/plan``).

The ledger moves an account to a paid plan only when Stripe says an invoice of it was paid
(``ledger.billing.subscription_events``); here Stripe is only asked:

- a paid plan, no live subscription: a subscription-mode Checkout Session (the customer pays on
  Stripe's page; the plan and its allowance land with ``invoice.paid``);
- a live subscription to another paid plan: its item moves to the new plan's price, with
  ``proration_behavior=none``: the change takes effect at the period's end, when Stripe bills
  the new price and its ``invoice.paid`` grants the new allowance. Why not prorate: the ledger
  grants a whole plan's allowance per paid invoice (and expires the one before), so a prorated
  invoice would either buy a month's credits for a fraction of the price or need a prorated
  allowance the rate card does not define; every invoice paying exactly one period of one plan
  keeps money and credits in step;
- a free plan (price 0) while subscribed: cancel at the period's end; the account goes back to
  the card's default plan when ``customer.subscription.deleted`` arrives. The same paid plan
  while that cancellation is pending resumes the subscription;
- a free plan with no subscription: a plain ``ChangePlan``; the same plan: nothing (``unchanged``).

An unknown plan is a 422 before Stripe is called; no Stripe key is the gateway's 503. Stripe's
idempotency keys derive from the call's ``Idempotency-Key``: a retried call opens the same
session (or makes the same update) instead of a second one. The live subscription is read from
Stripe, not from the ledger, whose copy lags by a webhook.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ledger import commands as c
from ledger import rows
from ledger.billing.checkout import SOURCE
from ledger.billing.gateway import StripeGateway
from ledger.billing.invoices import stripe_customer
from ledger.billing.subscription_events import period_end
from ledger.errors import InvalidRequest
from ledger.payments import ENDED
from ledger.rates import Plan
from ledger.service import Ledger

Outcome = Literal["checkout", "scheduled", "cancelling", "resumed", "changed", "unchanged"]
#: The outcomes that change the plan later, when Stripe says so (answered 202).
PENDING: frozenset[str] = frozenset({"checkout", "scheduled", "cancelling"})


@dataclass(frozen=True, slots=True)
class PlanChange:
    outcome: Outcome
    plan: str  #: the plan asked for
    current_plan: str  #: the account's plan now (a paid plan changes when its invoice is paid)
    checkout_url: str | None = None
    session_id: str | None = None
    stripe_subscription: str | None = None
    #: When the change takes effect (the period's end), if Stripe said.
    effective_at: datetime | None = None


def plan_metadata(account_id: str, plan_id: str, request_key: str | None) -> dict[str, str]:
    """What the session and the subscription carry for the webhook (strings, as Stripe keeps them)."""
    return {"source": SOURCE, "kind": "plan", "account": account_id, "plan": plan_id, "key": request_key or ""}


def stripe_key(step: str, account_id: str, request_key: str | None) -> str | None:
    """Stripe's idempotency key for one step of the API call keyed ``request_key``."""
    return f"credit-ledger:plan:{step}:{account_id}:{request_key}" if request_key else None


def _recurring_price(plan: Plan, currency: str) -> dict[str, Any]:
    return {"currency": currency.lower(), "unit_amount": plan.price_cents, "recurring": {"interval": "month"}}


def checkout_params(account_id: str, plan: Plan, currency: str, *, success_url: str, cancel_url: str,
                    request_key: str | None, customer: str | None) -> dict[str, Any]:
    """A subscription-mode Checkout Session for ``plan`` at its monthly price."""
    meta = plan_metadata(account_id, plan.id, request_key)
    params: dict[str, Any] = {
        "mode": "subscription", "success_url": success_url, "cancel_url": cancel_url,
        "client_reference_id": account_id,
        "line_items": [{"quantity": 1, "price_data": {**_recurring_price(plan, currency),
                                                      "product_data": {"name": f"{plan.name} plan"}}}],
        "metadata": meta,
        # The subscription, and each invoice's snapshot of it, carry what the webhook needs.
        "subscription_data": {"metadata": meta},
    }
    if customer:
        params["customer"] = customer
    return params


async def change_plan(ledger: Ledger, gateway: StripeGateway, account_id: str, plan_id: str, *,
                      success_url: str | None, cancel_url: str | None, request_key: str | None) -> PlanChange:
    target = ledger.card.plan(plan_id)  # UnknownPlan (422) before anything else
    account = await ledger.account(account_id)
    known = rows.subscription(account.settings)
    live = None
    if known is not None and known.live:
        live = await gateway.subscription(known.stripe_subscription)
        if live.get("status") in ENDED:
            live = None  # ended at Stripe; the webhook telling the ledger is on its way
    if live is None:
        if target.id == account.plan:
            return PlanChange("unchanged", target.id, account.plan)
        if target.price_cents == 0:
            await ledger.execute(c.ChangePlan(account_id=account_id, plan=target.id,
                                              idempotency_key=request_key))
            return PlanChange("changed", target.id, target.id)
        if not success_url or not cancel_url:
            raise InvalidRequest(f"plan {target.id!r} is paid through Stripe Checkout: give success_url and"
                                 " cancel_url")
        params = checkout_params(account_id, target, ledger.card.currency, success_url=success_url,
                                 cancel_url=cancel_url, request_key=request_key,
                                 customer=await stripe_customer(ledger, account_id))
        session = await gateway.create_checkout_session(params, stripe_key("checkout", account_id, request_key))
        return PlanChange("checkout", target.id, account.plan, checkout_url=str(session["url"]),
                          session_id=str(session["id"]))
    return await _change_subscription(gateway, live, account_id, account.plan, target, ledger.card.currency,
                                      request_key)


async def _change_subscription(gateway: StripeGateway, live: dict[str, Any], account_id: str, current: str,
                               target: Plan, currency: str, request_key: str | None) -> PlanChange:
    sub_id = str(live["id"])
    subscribed = str((live.get("metadata") or {}).get("plan") or current)
    cancelling = bool(live.get("cancel_at_period_end"))
    ends = period_end(live)

    def answer(outcome: Outcome) -> PlanChange:
        return PlanChange(outcome, target.id, current, stripe_subscription=sub_id, effective_at=ends)

    if target.price_cents == 0:
        if cancelling:
            return answer("unchanged")
        await gateway.update_subscription(sub_id, {"cancel_at_period_end": True},
                                          stripe_key("cancel", account_id, request_key))
        return answer("cancelling")
    if target.id == subscribed:
        if not cancelling:
            return answer("unchanged")
        await gateway.update_subscription(sub_id, {"cancel_at_period_end": False},
                                          stripe_key("resume", account_id, request_key))
        return answer("resumed")
    items = (live.get("items") or {}).get("data") or []
    if not items:
        raise InvalidRequest(f"subscription {sub_id} has no item to move to plan {target.id!r}")
    price = await gateway.create_price(
        {**_recurring_price(target, currency), "product_data": {"name": f"{target.name} plan"},
         "metadata": plan_metadata(account_id, target.id, request_key)},
        stripe_key(f"price:{target.id}", account_id, request_key))
    await gateway.update_subscription(sub_id, {
        "items": [{"id": items[0]["id"], "price": price["id"]}],
        "proration_behavior": "none",  # see the module's docstring
        "cancel_at_period_end": False,
        "metadata": {"plan": target.id, "key": request_key or ""},
    }, stripe_key(f"update:{target.id}", account_id, request_key))
    return answer("scheduled")
