"""An operator refunds a purchase: decided first, refunded through Stripe, then recorded.

1. The clawback is decided on an unlocked snapshot without committing: outside the refund window
   without ``force``, or nothing left of the purchase, refuses it before Stripe is called.
2. What is left (at most what was asked) is turned into cents, rounded down, and refunded through
   Stripe (its metadata names the credits taken back) with an idempotency key derived from the
   API call's ``Idempotency-Key``; a retried call finds the refund it already made (by that key in
   the refund's metadata) instead of deciding anew.
3. The clawback is recorded with the very command the ``charge.refunded`` webhook will build from
   the same Stripe refund (``stripe_events.refund_command``), so whichever comes second replays.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from ledger import commands as c
from ledger.billing.gateway import StripeGateway
from ledger.billing.stripe_events import PurchaseFacts, cents_for_credits, refund_command
from ledger.decide import Context, decide
from ledger.errors import NotFound, RefundRejected
from ledger.events import CreditsPurchased, RefundIssued
from ledger.money import format_credits
from ledger.planner import Outcome, new_uuid
from ledger.service import Ledger


@dataclass(frozen=True, slots=True)
class Refunded:
    outcome: Outcome
    refund: dict[str, Any]

    @property
    def event(self) -> RefundIssued:
        return next(e for e in self.outcome.events if isinstance(e, RefundIssued))


async def purchase_facts(ledger: Ledger, account_id: str, purchase_id: UUID) -> tuple[PurchaseFacts, str]:
    """The purchase's facts and its PaymentIntent; 404 if the account has no such purchase."""
    _, entry = await ledger.entry(account_id, purchase_id)
    if not isinstance(entry, CreditsPurchased):
        raise NotFound(f"entry {purchase_id} of account {account_id!r} is not a purchase")
    if not entry.stripe_payment_intent:
        raise RefundRejected(f"purchase {purchase_id} was not paid through Stripe: give credits back with a grant"
                             " instead", "not_paid_through_stripe")
    return PurchaseFacts(entry.event_id, entry.cents_paid, entry.credits_ucr + entry.bonus_ucr), \
        entry.stripe_payment_intent


async def would_take(ledger: Ledger, cmd: c.IssueRefund) -> int:
    """What the clawback would take back now, decided on a snapshot, nothing written; raises what
    would refuse it (outside the window, unknown purchase)."""
    now = ledger.clock.now()
    async with ledger.engine.connect() as conn:
        state = await ledger.store.snapshot(conn, cmd, now, ledger.card)
    events, _ = decide(state, cmd, Context(now=now, card=ledger.card, new_id=new_uuid))
    return sum(-e.amount_ucr for e in events if isinstance(e, RefundIssued))


def stripe_refund_key(account_id: str, request_key: str) -> str:
    return f"credit-ledger:refund:{account_id}:{request_key}"


async def refund_purchase(ledger: Ledger, gateway: StripeGateway, account_id: str, purchase_id: UUID, *,
                          amount_ucr: int | None, reason: str, force: bool, request_key: str | None) -> Refunded:
    facts, payment_intent = await purchase_facts(ledger, account_id, purchase_id)
    key = stripe_refund_key(account_id, request_key or str(uuid.uuid4()))
    made = [r for r in await gateway.refunds_for_payment_intent(payment_intent)
            if (r.get("metadata") or {}).get("request") == key] if request_key else []
    if made:  # a retry of a call that already refunded: record (or replay) that refund
        refund = made[0]
    else:
        taken = await would_take(ledger, c.IssueRefund(
            account_id=account_id, direction="clawback", purchase_id=purchase_id, amount_ucr=amount_ucr,
            reason=reason, force=force))
        if taken <= 0:
            raise RefundRejected(f"nothing of purchase {purchase_id} is left to refund", "nothing_left")
        cents = cents_for_credits(facts, taken)
        if cents <= 0:
            raise RefundRejected(f"{format_credits(taken)} credits of purchase {purchase_id} are worth less than"
                                 " a cent: nothing to refund", "below_one_cent")
        refund = await gateway.create_refund({
            "payment_intent": payment_intent, "amount": cents,
            "metadata": {"account": account_id, "purchase_id": str(purchase_id), "reason": reason[:500],
                         "credits_ucr": str(taken), "request": key}}, key)
    cmd = refund_command(account_id, facts, refund)
    if cmd is None:
        raise RefundRejected(f"Stripe refund {refund.get('id')} is {refund.get('status')}: nothing was taken back",
                             "refund_failed")
    return Refunded(await ledger.execute(cmd), refund)
