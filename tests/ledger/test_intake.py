"""Metered usage batches: a bad item is ``rejected`` (final), an item the server could not record
now is ``failed`` (retry with its key), and a database outage for the whole batch is one
``Unavailable``, never a list of rejections."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import intake
from ledger.clock import ManualClock
from ledger.errors import (
    CommandFailed,
    InvalidRequest,
    LedgerError,
    OutcomeUnknown,
    PaymentRequired,
    RateLimited,
    Unavailable,
    UnknownAccount,
)
from ledger.rates import RateCard
from tests.ledger.conftest import OpenAccount
from tests.pg_proxy import ledger_behind_proxy


def test_transient_is_every_5xx_and_only_those() -> None:
    transient: list[LedgerError] = [Unavailable("x"), OutcomeUnknown("x"), CommandFailed("x")]
    final: list[LedgerError] = [InvalidRequest("x"), UnknownAccount("a"), RateLimited(limit_per_minute=1,
                                retry_after_s=1), PaymentRequired(required_ucr=1, remaining_ucr=0,
                                                                  reason="insufficient_balance", upgrade_url="u")]
    assert [e.transient for e in transient] == [True] * 3
    assert [e.transient for e in final] == [False] * 4


async def test_a_database_outage_is_unavailable_and_the_retry_records_each_item_once(
    engine: AsyncEngine, database_url: str, clock: ManualClock, rate_card: RateCard, open_account: OpenAccount,
) -> None:
    account = await open_account(credits_ucr=10_000_000)
    items = [{"account_id": account, "operation": "email", "quantity": 10, "idempotency_key": f"out-{i}"}
             for i in range(3)]
    bad = {"account_id": account, "operation": "no-such-operation", "quantity": 1, "idempotency_key": "bad"}
    async with ledger_behind_proxy(database_url, clock, rate_card) as (remote, proxy):
        warm = await intake.record_usage(remote, [{**items[0], "idempotency_key": "warm"}])
        assert [r.status for r in warm] == ["created"]
        await proxy.cut()
        with pytest.raises(Unavailable) as outage:
            await intake.record_usage(remote, [*items, bad])
        assert outage.value.status == 503 and outage.value.retry_after_s
        await proxy.start()
        results = await intake.record_usage(remote, [*items, bad])
        assert [r.status for r in results] == ["created"] * 3 + ["rejected"]
        assert [r.status for r in await intake.record_usage(remote, items)] == ["replayed"] * 3
    async with engine.connect() as conn:
        keys = (await conn.execute(text(
            "SELECT idempotency_key FROM events WHERE account_id = :a AND idempotency_key LIKE 'out-%'"
            " ORDER BY idempotency_key"), {"a": account})).scalars().all()
    assert keys == ["out-0", "out-1", "out-2"], "nothing recorded twice"
