"""Disputes of purchases: a disputed payment freezes what is left of the purchase's credits, and
raises an alert; closing it won gives them back, lost keeps them gone.

Stripe sends several events about one dispute (created, funds withdrawn, updated) and redelivers
each: recording a dispute already recorded, or closing one already closed the same way, is a
no-op (no event) rather than a 409, so a webhook that repeats itself is answered 200 and not
retried for days. Only a contradiction is refused (409): a second dispute on the same purchase,
a close naming another dispute, another outcome for a closed one, a close before the dispute
was recorded (the webhook is retried once the ``created`` event landed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from ledger import commands as c
from ledger.decide.context import Builder
from ledger.decide.credits import settle_debt
from ledger.errors import InvalidState, NotFound
from ledger.events import AlertRaised, DisputeClosed, PurchaseDisputed
from ledger.grants import Grant
from ledger.money import format_credits
from ledger.state import Purchase

#: The kind of the alert a dispute raises (``AlertRaised.kind``), delivered as alerts are.
DISPUTE_ALERT = "purchase_disputed"


def _purchase(b: Builder, purchase_id: UUID) -> tuple[Purchase, Grant]:
    purchase = b.state.purchases.get(purchase_id)
    if purchase is None:
        raise NotFound(f"account {b.state.account_id!r} has no purchase {purchase_id}: purchase_id is the id of"
                       " the purchase's ledger entry")
    grant = b.state.grants.get(purchase.grant_id)
    if grant is None:  # the store loads it with the purchase
        raise NotFound(f"no grant for purchase {purchase_id}")
    return purchase, grant


def _record(b: Builder, cmd: c.RecordDispute) -> None:
    purchase, grant = _purchase(b, cmd.purchase_id)
    d = purchase.dispute
    if d is not None:
        if d.dispute_id == cmd.dispute_id:
            return
        raise InvalidState(f"purchase {purchase.purchase_id} already has dispute {d.dispute_id!r} ({d.status})")
    frozen = grant.remaining_ucr
    b.emit(PurchaseDisputed, amount_ucr=-frozen, purchase_id=purchase.purchase_id, grant_id=grant.grant_id,
           dispute_id=cmd.dispute_id, reason=cmd.reason, frozen_ucr=frozen)
    # Keyed like every alert (scope, subject, period): once per dispute.
    b.emit(AlertRaised, kind=DISPUTE_ALERT, scope="purchase", subject=str(purchase.purchase_id),
           period=cmd.dispute_id, threshold_pct=0, level="critical",
           message=f"the payment of purchase {purchase.purchase_id} was disputed ({cmd.reason});"
                   f" {format_credits(frozen)} credits left of it are frozen until the dispute closes",
           spent_ucr=0, limit_ucr=frozen)


def _close(b: Builder, cmd: c.CloseDispute) -> None:
    purchase, grant = _purchase(b, cmd.purchase_id)
    d = purchase.dispute
    if d is None or d.dispute_id != cmd.dispute_id:
        raise InvalidState(f"purchase {purchase.purchase_id} has no dispute {cmd.dispute_id!r} recorded")
    if d.status != "open":
        if d.status == cmd.outcome:
            return
        raise InvalidState(f"dispute {d.dispute_id!r} was already closed {d.status}")
    restored = d.frozen_ucr if cmd.outcome == "won" else 0
    b.emit(DisputeClosed, amount_ucr=restored, purchase_id=purchase.purchase_id, grant_id=grant.grant_id,
           dispute_id=d.dispute_id, outcome=cmd.outcome, restored_ucr=restored)
    if restored:
        settle_debt(b, grant.grant_id)  # credits coming back pay debt first, as new credits do


#: The commands decided here.
HANDLERS: dict[type[c.Command], Callable[[Builder, Any], None]] = {
    c.RecordDispute: _record,
    c.CloseDispute: _close,
}
