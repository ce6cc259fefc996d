"""Charging one auto-refill: ask the ledger, pay through Stripe, record what Stripe answered.

Safe to run any number of times for one crossing, at once or in turn (workers race, Dramatiq
redelivers, the hourly charge tries a refill too):

1. ``RequestAutoRefill`` under the crossing's key: the ledger refuses a refill that is not due
   (disabled, no card, the breaker open, one pending, the daily cap) and records nothing.
2. The account's state says whether this crossing's request is still pending; only then is Stripe
   asked, with the same key as its idempotency key (``ledger.billing.refills``): one PaymentIntent.
3. Its outcome is recorded with the command the webhook builds from the same PaymentIntent:
   credits land once, when it was paid; a decline is ``AutoRefillFailed`` and an alert.

An outage of Stripe or the database raises (``PaymentProviderUnavailable``, ``Unavailable``): the
caller retries, and the steps above make the retry safe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from ledger import commands as c
from ledger import rows
from ledger.billing.gateway import StripeGateway
from ledger.billing.refills import outcome_command, payment_params, request_key
from ledger.errors import AutoRefillRefused, PaymentProviderNotConfigured
from ledger.payments import RefillTrigger
from ledger.planner import Outcome
from ledger.refill import runs_out_within
from ledger.service import Ledger

log = logging.getLogger(__name__)

Status = Literal["refused", "settled", "paid", "failed", "processing"]


@dataclass(frozen=True, slots=True)
class RefillResult:
    """How one attempt ended: ``refused`` (not due: ``detail`` is the reason), ``settled`` (paid or
    failed before), ``paid``, ``failed``, or ``processing`` (its webhook will tell)."""

    status: Status
    detail: str = ""


async def charge_refill(ledger: Ledger, stripe: StripeGateway, account_id: str, crossing: int,
                        trigger: RefillTrigger = "threshold") -> RefillResult:
    """Charge the refill of ``crossing`` once (see the module docstring)."""
    key = request_key(account_id, crossing)
    try:
        await ledger.execute(c.RequestAutoRefill(account_id=account_id, crossing=crossing, trigger=trigger,
                                                 idempotency_key=key))
    except AutoRefillRefused as refused:
        return RefillResult("refused", refused.reason)
    # A replayed request answers alike whether the refill is owed or long settled: the state tells.
    refill = rows.auto_refill((await ledger.account(account_id)).settings)
    request = refill.last
    if request is None or request.crossing != crossing or request.status != "pending":
        return RefillResult("settled", request.status if request is not None and request.crossing == crossing else "")
    assert refill.stripe_customer is not None and refill.payment_method is not None  # the request needs both
    payment = await stripe.pay_off_session(
        payment_params(account_id, request, customer=refill.stripe_customer, payment_method=refill.payment_method,
                       currency=ledger.card.currency), key)
    command = outcome_command(payment)
    if command is None:
        return RefillResult("processing", str(payment.get("id")))
    await ledger.execute(command)
    if isinstance(command, c.RecordPurchase):
        return RefillResult("paid", str(payment["id"]))
    log.info("auto-refill of %s crossing %d declined: %s", account_id, crossing, command.reason)
    return RefillResult("failed", command.reason)


async def refill_before_pausing(ledger: Ledger, stripe: StripeGateway, command: c.ChargeDeploymentHour) -> Outcome:
    """A deployment hour found too little to pay (asked with ``pause_if_unpaid=False``, refused,
    nothing recorded): try one refill, then charge it again, pausing the deployment if still unpaid.

    The refill is asked for the account's version now (``unpaid_hour``): a later hour with no new
    event in between finds it already asked, so a declining card is charged once, not every hour.
    """
    version = (await ledger.balance(command.account_id, recent=0)).version
    try:
        result = await charge_refill(ledger, stripe, command.account_id, version, "unpaid_hour")
        log.info("hour %d of %s unpaid; auto-refill: %s %s", command.hour_index, command.deployment_id,
                 result.status, result.detail)
    except PaymentProviderNotConfigured:
        pass  # no Stripe on this server: no refill to try, the hour pauses as it would
    return await ledger.execute(command.model_copy(update={"pause_if_unpaid": True}))


async def refill_if_running_out(ledger: Ledger, stripe: StripeGateway, account_id: str) -> RefillResult:
    """The forecast trigger (``runout_hours``): refill when the available balance runs out within
    that many hours at the last days' burn rate plus what the running deployments cost an hour,
    though no debit crossed the threshold yet. Asked for the account's version now, so a forecast
    read again with nothing new in between asks nothing more."""
    refill = rows.auto_refill((await ledger.account(account_id)).settings)
    if not refill.enabled or refill.runout_hours is None:
        return RefillResult("refused", "runout_off")
    balance = await ledger.balance(account_id, recent=0, forecast=True)
    hourly = sum(d.hourly_ucr for d in await ledger.deployments(account_id) if d.status == "running")
    if not runs_out_within(balance.available_ucr, refill.runout_hours, burned_ucr=balance.burned_ucr,
                           window=balance.burn_window, hourly_ucr=hourly):
        return RefillResult("refused", "not_running_out")
    return await charge_refill(ledger, stripe, account_id, balance.version, "runout")
