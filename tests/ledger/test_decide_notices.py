"""decide, payment notices: given an account, when NotifyPaymentProblem, then one alert. Pure.

A payment that credited nothing (a failed bank debit, a session paid another amount than it
sold) is told to the account as an alert, moving no money, keyed by the Stripe object."""

from __future__ import annotations

from ledger import commands as c
from ledger.events import AlertRaised
from tests.ledger.test_decide import ACCT, funded, only, types


def test_a_payment_problem_is_one_warning_that_moves_no_money() -> None:
    s = funded()
    before = s.state.balance_ucr
    events = s.when(c.NotifyPaymentProblem(account_id=ACCT, reason="payment_failed", reference="cs_test_1",
                                           message="the payment of checkout cs_test_1 failed: nothing was credited"))
    assert types(events) == ["AlertRaised"]
    alert = only(events, AlertRaised)
    assert (alert.kind, alert.scope, alert.subject, alert.period, alert.level, alert.amount_ucr) == (
        "payment_problem", "payment", "cs_test_1", "payment_failed", "warning", 0)
    assert "cs_test_1" in alert.message
    assert s.state.balance_ucr == before
