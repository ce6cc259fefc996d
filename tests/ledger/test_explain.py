"""``Ledger.explain``: why an entry cost what it did, read from the entry, its card and the
settings in force before it."""

from __future__ import annotations

import uuid

import pytest

from ledger import commands as c
from ledger.errors import NotFound
from ledger.events import Attribution, UsageMetered
from ledger.service import Ledger
from tests.ledger.conftest import OpenAccount


async def usage(ledger: Ledger, cmd: c.Command) -> UsageMetered:
    out = await ledger.execute(cmd)
    return next(e for e in out.events if isinstance(e, UsageMetered))


async def test_explains_price_and_rounding(ledger: Ledger, open_account: OpenAccount) -> None:
    acct = await open_account(credits_ucr=10_000_000)
    # 1 input token at 2.50 credits per 1M: 2.5 µcr, charged 3.
    e = await usage(ledger, c.Charge(account_id=acct, operation="gpt-4o", quantities={"input_tokens": 1}))
    x = await ledger.explain(acct, e.event_id)
    assert x.entry == e and x.price is not None
    assert x.price.operation == "gpt-4o" and x.price.amount_ucr == e.cost_ucr == 3
    assert x.rounding == "exact 2.5 µcr rounded up to 3 µcr (charges never round down)"
    # 1,000 emails at 0.001: exactly one credit.
    e = await usage(ledger, c.Charge(account_id=acct, operation="email", quantity=1000))
    assert (await ledger.explain(acct, e.event_id)).rounding == "exact 1000000 µcr: no rounding needed"
    # 10 seconds of a call with a one-minute minimum: the minimum is charged.
    e = await usage(ledger, c.Charge(account_id=acct, operation="voice_minute", quantity=10))
    x = await ledger.explain(acct, e.event_id)
    assert x.price is not None and x.price.minimum_ucr == e.cost_ucr == 13_000
    assert x.rounding.endswith("is below the session minimum: charged the minimum 13000 µcr")


async def test_limits_in_force_are_the_latest_before_the_entry(ledger: Ledger, open_account: OpenAccount) -> None:
    acct = await open_account(credits_ucr=10_000_000)
    await ledger.execute(c.SetBudget(account_id=acct, monthly_limit_ucr=9_000_000, hard_stop=True))
    await ledger.execute(c.SetLimit(account_id=acct, scope="agent", subject="bot", per_day_ucr=5_000_000))
    await ledger.execute(c.SetLimit(account_id=acct, scope="agent", subject="bot", per_day_ucr=4_000_000))
    gated = await usage(ledger, c.Charge(account_id=acct, operation="email", quantity=1,
                                         attribution=Attribution(agent="bot", member="ann")))
    metered = await usage(ledger, c.Meter(account_id=acct, operation="email", quantity=1,
                                          attribution=Attribution(agent="bot")))
    # Settings after the entries do not explain them.
    await ledger.execute(c.SetLimit(account_id=acct, scope="agent", subject="bot", per_day_ucr=1_000_000))
    await ledger.execute(c.SetLimit(account_id=acct, scope="member", subject="ann", per_day_ucr=1_000_000))
    x = await ledger.explain(acct, gated.event_id)
    assert [(r["rule"], r.get("limit_ucr"), r["applies"]) for r in x.limits_checked] == [
        ("available_balance", None, True), ("monthly_budget", 9_000_000, True), ("agent_limit", 4_000_000, True)]
    assert x.limits_checked[2]["period"] == "per_day" and x.limits_checked[2]["subject"] == "bot"
    x = await ledger.explain(acct, metered.event_id)
    assert [(r["rule"], r["applies"]) for r in x.limits_checked] == [
        ("available_balance", False), ("monthly_budget", False), ("agent_limit", False)]


async def test_an_entry_that_is_not_usage_has_no_price(ledger: Ledger, open_account: OpenAccount) -> None:
    acct = await open_account()
    out = await ledger.execute(c.GrantCredits(account_id=acct, amount_ucr=5, source="promotion", reason="t"))
    x = await ledger.explain(acct, out.events[0].event_id)
    assert x.price is None and x.limits_checked == []
    assert x.rounding == "none: this entry is not priced usage"
    with pytest.raises(NotFound):
        await ledger.explain(acct, uuid.uuid4())
    other = await open_account()
    with pytest.raises(NotFound):  # an entry of another account
        await ledger.explain(other, out.events[0].event_id)
