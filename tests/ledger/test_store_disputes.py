"""Disputes through the store on PostgreSQL: the frozen credits and the dispute persist, every
delivery of the same dispute freezes once (even all at once), and verify agrees."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.errors import InvalidState, LedgerError, NotFound, PaymentRequired
from ledger.events import AlertRaised, CreditsPurchased, DisputeClosed, PurchaseDisputed
from ledger.service import Ledger
from ledger.verify import verify_account
from tests.ledger.conftest import OpenAccount

C = 1_000_000


async def _bought(ledger: Ledger, account_id: str) -> CreditsPurchased:
    out = await ledger.execute(c.RecordPurchase(account_id=account_id, kind="pack", pack_id="starter", cents_paid=1000,
                                                idempotency_key="stripe:evt_paid"))
    e = out.events[0]
    assert isinstance(e, CreditsPurchased)
    return e


async def test_a_dispute_freezes_and_a_win_unfreezes_on_postgres(ledger: Ledger, engine: AsyncEngine,
                                                                 open_account: OpenAccount) -> None:
    a = await open_account()
    bought = await _bought(ledger, a)
    await ledger.execute(c.Meter(account_id=a, operation="email", quantity=3000))  # 3 of the 10 credits
    # Five deliveries of the same dispute at once (distinct Stripe events, distinct keys): frozen once.
    results = await asyncio.gather(*(ledger.execute(c.RecordDispute(
        account_id=a, purchase_id=bought.event_id, dispute_id="dp_1", reason="fraudulent",
        idempotency_key=f"stripe:evt_d{i}")) for i in range(5)))
    recorded = [e for r in results for e in r.events]
    assert [type(e) for e in recorded] == [PurchaseDisputed, AlertRaised]
    assert isinstance(recorded[0], PurchaseDisputed) and recorded[0].frozen_ucr == 7 * C
    assert (await ledger.balance(a)).balance_ucr == 0
    with pytest.raises(PaymentRequired):  # frozen credits cannot be spent
        await ledger.execute(c.Charge(account_id=a, operation="email", quantity=1))
    # The alert is among the account's notifications, as every alert is.
    assert [e.kind for _, e in await ledger.notifications(a) if isinstance(e, AlertRaised)] == ["purchase_disputed"]
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT dispute_id, status, frozen_ucr FROM disputes WHERE account_id = :a"),
                                  {"a": a})).one()
    assert tuple(row) == ("dp_1", "open", 7 * C)

    won = await ledger.execute(c.CloseDispute(account_id=a, purchase_id=bought.event_id, dispute_id="dp_1",
                                              outcome="won", idempotency_key="stripe:evt_closed"))
    assert isinstance(won.events[0], DisputeClosed) and won.events[0].restored_ucr == 7 * C
    assert (await ledger.balance(a)).balance_ucr == 7 * C
    again = await ledger.execute(c.CloseDispute(account_id=a, purchase_id=bought.event_id, dispute_id="dp_1",
                                                outcome="won", idempotency_key="stripe:evt_closed_again"))
    assert again.events == ()
    assert (await ledger.balance(a)).balance_ucr == 7 * C
    assert (await verify_account(engine, a)).mismatches == []


async def test_refused_dispute_commands_record_nothing(ledger: Ledger, open_account: OpenAccount) -> None:
    a = await open_account()
    bought = await _bought(ledger, a)
    before = await ledger.balance(a)
    refusals: list[tuple[c.Command, type[LedgerError]]] = [  # 409, 404
        (c.CloseDispute(account_id=a, purchase_id=bought.event_id, dispute_id="dp_1", outcome="lost"), InvalidState),
        (c.RecordDispute(account_id=a, purchase_id=bought.grant_id, dispute_id="dp_1", reason="x"), NotFound),
    ]
    for cmd, error in refusals:
        with pytest.raises(error):
            await ledger.execute(cmd)
    after = await ledger.balance(a)
    assert (after.balance_ucr, after.version) == (before.balance_ucr, before.version)
