"""decide, disputes: given events, when RecordDispute / CloseDispute, then events. Pure.

A disputed purchase's credits left are frozen (no longer spendable) and an alert is raised in the
same decision; won gives them back to the same grant (paying debt first), lost keeps them gone.
"""

from __future__ import annotations

from uuid import UUID

from ledger import commands as c
from ledger.errors import InvalidState, NotFound, PaymentRequired
from ledger.events import AlertRaised, CreditsPurchased, DebtSettled, DisputeClosed, PurchaseDisputed, RefundIssued
from ledger.payments import Dispute
from tests.ledger.test_decide import ACCT, DAY, C, charge, clawback, funded, meter, only, purchase_entry, types


def dispute(purchase_id: UUID, dispute_id: str = "dp_1", reason: str = "fraudulent") -> c.RecordDispute:
    return c.RecordDispute(account_id=ACCT, purchase_id=purchase_id, dispute_id=dispute_id, reason=reason)


def close(purchase_id: UUID, outcome: str, dispute_id: str = "dp_1") -> c.CloseDispute:
    return c.CloseDispute(account_id=ACCT, purchase_id=purchase_id, dispute_id=dispute_id,
                          outcome=outcome)  # type: ignore[arg-type]


def test_a_dispute_freezes_what_is_left_of_the_purchase_and_raises_an_alert() -> None:
    s = funded()  # signup 5 (promotion) + starter 10 (purchase)
    bought = purchase_entry(s)
    s.when(charge("email", 7_000))  # the 5 signup credits, then 2 of the purchase
    events = s.when(dispute(bought.event_id))
    assert types(events) == ["PurchaseDisputed", "AlertRaised"]
    d = only(events, PurchaseDisputed)
    assert (d.purchase_id, d.grant_id, d.dispute_id, d.frozen_ucr, d.amount_ucr) == (
        bought.event_id, bought.grant_id, "dp_1", 8 * C, -8 * C)
    assert s.state.grants[bought.grant_id].remaining_ucr == 0
    assert s.state.balance_ucr == 0
    assert s.state.purchases[bought.event_id].dispute == Dispute("dp_1", "open", 8 * C, 0, s.now)
    alert = only(events, AlertRaised)
    assert (alert.kind, alert.scope, alert.subject, alert.period, alert.level, alert.limit_ucr) == (
        "purchase_disputed", "purchase", str(bought.event_id), "dp_1", "critical", 8 * C)
    assert "fraudulent" in alert.message and "8" in alert.message
    # Frozen credits cannot be spent.
    s.refused(charge("email", 1), PaymentRequired)


def test_a_won_dispute_gives_the_frozen_credits_back_to_the_same_grant() -> None:
    s = funded()
    bought = purchase_entry(s)
    s.when(dispute(bought.event_id))
    s.advance(DAY)
    e = only(s.when(close(bought.event_id, "won")), DisputeClosed)
    assert (e.outcome, e.restored_ucr, e.amount_ucr, e.grant_id) == ("won", 10 * C, 10 * C, bought.grant_id)
    assert s.state.grants[bought.grant_id].remaining_ucr == 10 * C
    got = s.state.purchases[bought.event_id].dispute
    assert got is not None and (got.status, got.restored_ucr, got.closed_at) == ("won", 10 * C, s.now)


def test_a_lost_dispute_keeps_the_credits_gone() -> None:
    s = funded()
    bought = purchase_entry(s)
    s.when(dispute(bought.event_id))
    e = only(s.when(close(bought.event_id, "lost")), DisputeClosed)
    assert (e.outcome, e.restored_ucr, e.amount_ucr) == ("lost", 0, 0)
    assert s.state.grants[bought.grant_id].remaining_ucr == 0
    assert s.state.balance_ucr == 5 * C  # the signup credits only


def test_credits_given_back_by_a_won_dispute_pay_debt_first() -> None:
    s = funded()  # 5 signup + 10 purchased
    bought = purchase_entry(s)
    s.when(dispute(bought.event_id))  # 10 frozen, 5 left
    s.when(meter("email", 8_000))  # 5 from signup, 3 as debt
    assert s.state.debt_ucr == 3 * C
    events = s.when(close(bought.event_id, "won"))
    assert types(events) == ["DisputeClosed", "DebtSettled"]
    assert only(events, DebtSettled).settled_ucr == 3 * C
    assert (s.state.debt_ucr, s.state.grants[bought.grant_id].remaining_ucr, s.state.balance_ucr) == (0, 7 * C, 7 * C)


def test_a_clawback_of_a_disputed_purchase_takes_nothing_while_frozen_and_what_is_left_after_a_win() -> None:
    s = funded()
    bought = purchase_entry(s)
    s.when(dispute(bought.event_id))
    e = only(s.when(clawback(bought.event_id)), RefundIssued)
    assert (e.amount_ucr, e.requested_ucr, e.capped) == (0, 10 * C, True)
    s.when(close(bought.event_id, "won"))
    e = only(s.when(clawback(bought.event_id, 4 * C)), RefundIssued)
    assert (e.amount_ucr, e.capped) == (-4 * C, False)
    assert s.state.grants[bought.grant_id].remaining_ucr == 6 * C


def test_a_dispute_of_a_refunded_purchase_freezes_nothing_but_still_alerts() -> None:
    s = funded()
    bought = purchase_entry(s)
    s.when(clawback(bought.event_id))
    events = s.when(dispute(bought.event_id))
    assert types(events) == ["PurchaseDisputed", "AlertRaised"]
    assert only(events, PurchaseDisputed).frozen_ucr == 0
    assert only(s.when(close(bought.event_id, "won")), DisputeClosed).restored_ucr == 0


def test_the_same_dispute_twice_is_a_no_op_and_a_contradiction_is_refused() -> None:
    s = funded()
    bought = purchase_entry(s)
    s.when(dispute(bought.event_id))
    before = s.state
    assert s.when(dispute(bought.event_id, reason="another event about it")) == []  # Stripe repeats itself
    assert s.state == before
    refused = s.refused(dispute(bought.event_id, "dp_2"), InvalidState)
    assert refused.status == 409 and "dp_1" in refused.detail
    s.refused(close(bought.event_id, "won", "dp_2"), InvalidState)
    s.when(close(bought.event_id, "won"))
    after = s.state
    assert s.when(close(bought.event_id, "won")) == []  # a repeated close: nothing more given back
    assert s.when(dispute(bought.event_id)) == []  # nor refrozen by a late "created"
    assert s.state == after
    assert s.refused(close(bought.event_id, "lost"), InvalidState).status == 409


def test_unknown_purchases_and_closing_before_recording_are_refused() -> None:
    s = funded()
    bought = purchase_entry(s)
    signup = s.history[1].event_id  # the signup grant's entry: not a purchase
    for wrong in (bought.grant_id, signup, UUID(int=999_999)):
        assert s.refused(dispute(wrong), NotFound).status == 404
        s.refused(close(wrong, "won"), NotFound)
    s.refused(close(bought.event_id, "won"), InvalidState)  # retried by Stripe once "created" landed


def test_a_dispute_freezes_only_its_purchase() -> None:
    s = funded()
    s.given(c.RecordPurchase(account_id=ACCT, kind="custom", cents_paid=500))
    first = next(e for e in s.history if isinstance(e, CreditsPurchased))
    second = purchase_entry(s)
    s.when(dispute(first.event_id))
    assert s.state.grants[first.grant_id].remaining_ucr == 0
    assert s.state.grants[second.grant_id].remaining_ucr == second.amount_ucr
