"""The balance read: its recent entries are the log's, and the run-out forecast reads the account's
day counters (exact for its window, whatever the history)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from alembic import command
from sqlalchemy import text

from ledger import commands as c
from ledger.clock import ManualClock, day_key
from ledger.db import alembic_config, make_engine, migrate
from ledger.events import Attribution
from ledger.rate_cards import ensure_rate_card
from ledger.service import Ledger
from ledger.verify import verify
from ledger.views import burn_window, runout_at
from tests.ledger.conftest import T0, OpenAccount

UCR = 1_000_000


def test_the_window_is_whole_utc_days_covering_the_last_week() -> None:
    start, days = burn_window(T0)  # 2026-11-01 09:00 UTC
    assert start.isoformat() == "2026-10-25T00:00:00+00:00"
    assert days == [f"D2026-10-{d}" for d in range(25, 32)] + ["D2026-11-01"]
    assert T0 - start == timedelta(days=7, hours=9)


async def test_forecast_counts_the_window_and_nothing_older(ledger: Ledger, clock: ManualClock,
                                                            open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=1_000 * UCR, plain=False)  # no signup burn in the window
    # Usage that happened ten days ago (a backfill) is outside the window; yesterday's and today's are in.
    await ledger.execute(c.Meter(account_id=account, operation="email", quantity=50_000,
                                 occurred_at=T0 - timedelta(days=10)))
    await ledger.execute(c.Meter(account_id=account, operation="email", quantity=3_000,
                                 occurred_at=T0 - timedelta(days=1)))
    await ledger.execute(c.Charge(account_id=account, operation="email", quantity=4_000))
    b = await ledger.balance(account, forecast=True)
    per_email = 1_000  # µcr: the frozen test card's email rate
    burned = 7_000 * per_email
    start, _ = burn_window(clock.now())
    assert b.runout_at == runout_at(clock.now(), b.available_ucr, burned, clock.now() - start)
    assert b.runout_at is not None
    # Without the backfilled day the forecast would be ~8x nearer: it is not in the sum.
    nearer = runout_at(clock.now(), b.available_ucr, burned + 50_000 * per_email, clock.now() - start)
    assert nearer is not None and b.runout_at > nearer


async def test_an_idle_week_has_no_forecast(ledger: Ledger, clock: ManualClock, open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=10 * UCR)
    await ledger.execute(c.Charge(account_id=account, operation="email", quantity=10))
    assert (await ledger.balance(account, forecast=True)).runout_at is not None
    clock.advance(timedelta(days=9))
    assert (await ledger.balance(account, forecast=True)).runout_at is None


async def test_migration_backfills_the_day_counters_exactly(fresh_database_url: str) -> None:
    engine = make_engine(fresh_database_url)
    clock = ManualClock(T0)
    counters = text("SELECT account_id, period, spent_ucr FROM spend_counters"
                    " WHERE scope = 'account' AND period LIKE 'D%' ORDER BY 1, 2")
    try:
        service = Ledger(engine, clock, await ensure_rate_card(engine))
        await service.start()
        try:
            for account in ("bf-a", "bf-b"):
                await service.execute(c.OpenAccount(account_id=account, name=account, plan="pro"))
                for days_ago in (0, 1, 1, 3, 12):
                    await service.execute(c.Meter(account_id=account, operation="email", quantity=7 + days_ago,
                                                  occurred_at=T0 - timedelta(days=days_ago)))
        finally:
            await service.stop()
        async with engine.connect() as conn:
            written = (await conn.execute(counters)).all()
        assert {(a, p) for a, p, _ in written} >= {("bf-a", day_key(T0)), ("bf-b", day_key(T0 - timedelta(days=12)))}

        # A database from before the day counters has none (today's verify reads columns of later
        # revisions, so it runs only on the migrated database)...
        config = alembic_config(fresh_database_url)
        await engine.dispose()
        await asyncio.to_thread(command.downgrade, config, "0003")
        async with engine.connect() as conn:
            assert (await conn.execute(counters)).all() == []
        # ...and the migration restores each one to the sum of its day's usage events.
        await engine.dispose()
        await asyncio.to_thread(migrate, fresh_database_url)
        async with engine.connect() as conn:
            assert (await conn.execute(counters)).all() == written
        assert (await verify(engine)).clean
    finally:
        await engine.dispose()


async def test_recent_entries_are_the_newest_of_the_log(ledger: Ledger, open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=50 * UCR, plain=False)
    who = Attribution(agent="bot", member="ann", run="r9")
    for i in range(25):
        await ledger.execute(c.Charge(account_id=account, operation="gpt-4o", attribution=who,
                                      quantities={"input_tokens": 100 + i, "output_tokens": 7},
                                      idempotency_key=f"req-{i}"))
    await ledger.execute(c.SetBudget(account_id=account, monthly_limit_ucr=40 * UCR, hard_stop=True))
    b = await ledger.balance(account, recent=20)
    page = await ledger.ledger_page(account, limit=20)
    assert list(b.entries) == page and len(page) == 20
    assert [e for _, e in page] == list(b.recent)
    assert b.version == page[0][0] and b.balance_ucr == page[0][1].balance_after_ucr
    assert (await ledger.balance(account, recent=0)).entries == []
