"""The projector framework: spans folded once with their checkpoint, rebuilds that swap in, and
``differences`` that names a row a fresh fold would not make."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.events import Attribution
from ledger.log import claim_checkpoint, load_checkpoint
from ledger.service import Ledger
from projections.catalogue import PROJECTORS
from projections.history import HISTORY
from projections.projector import Projector
from projections.rebuild import differences, rebuild
from projections.runner import project_once
from tests.projections.conftest import OpenAccount


async def _usage(ledger: Ledger, account: str, n: int) -> None:
    for i in range(n):
        await ledger.execute(c.Meter(account_id=account, operation="gpt-4o",
                                     quantities={"input_tokens": 1000 + i, "output_tokens": 10 * i},
                                     attribution=Attribution(agent=f"agent-{i % 3}", flow="f1")))


async def _fold_in_spans(engine: AsyncEngine, projector: Projector, batch: int) -> None:
    """``project_once`` until the projector has folded every event there is (a transaction open
    anywhere on the server holds the log back a while: wait for it, up to a minute)."""
    deadline = time.monotonic() + 60
    async with engine.connect() as conn:
        last = (await conn.execute(text("SELECT max(position) FROM events"))).scalar()
    while (await _checkpoint(engine, projector)) != last:
        if not await project_once(engine, projector, batch=batch):
            assert time.monotonic() < deadline, f"{projector.name} did not catch up"
            await asyncio.sleep(0.05)


async def _checkpoint(engine: AsyncEngine, projector: Projector) -> int:
    async with engine.connect() as conn:
        return (await load_checkpoint(conn, projector.checkpoint)).position


async def _rows(engine: AsyncEngine, table: str) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4"))).all()]


async def test_small_spans_fold_what_one_span_folds(engine: AsyncEngine, ledger: Ledger,
                                                     open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=10**9)
    await _usage(ledger, account, 25)
    await _fold_in_spans(engine, HISTORY, batch=3)
    for p in PROJECTORS:
        await _fold_in_spans(engine, p, batch=7)
        assert await differences(engine, p) == []
    async with engine.connect() as conn:
        n = (await conn.execute(text("SELECT count(*) FROM proj_executions WHERE account_id = :a"),
                                {"a": account})).scalar()
    assert n == 25  # every usage event, once


async def test_a_changed_row_is_named_and_a_rebuild_puts_it_right(engine: AsyncEngine, ledger: Ledger,
                                                                  open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=10**9)
    await _usage(ledger, account, 5)
    for p in PROJECTORS:
        await _fold_in_spans(engine, p, batch=1000)
    before = await _rows(engine, "proj_usage_hourly")
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE proj_usage_hourly SET cost_ucr = cost_ucr + 1"
                                " WHERE account_id = :a AND dim = 'agent' AND key = 'agent-1'"), {"a": account})
    usage = next(p for p in PROJECTORS if p.name == "usage")
    found = await differences(engine, usage)
    assert {(d.table, d.side) for d in found} == {("proj_usage_hourly", "read model only"),
                                                  ("proj_usage_hourly", "fresh fold only")}
    assert all(d.row["key"] == "agent-1" for d in found)
    done = await rebuild(engine, usage)
    assert done.events > 0
    assert await _rows(engine, "proj_usage_hourly") == before
    assert await differences(engine, usage) == []


async def test_a_projector_another_process_is_folding_is_skipped_not_waited_for(
        engine: AsyncEngine, ledger: Ledger, open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=10**9)
    await _usage(ledger, account, 3)
    assert await project_once(engine, HISTORY) > 0  # the checkpoint row exists from here on
    await _usage(ledger, account, 3)
    async with engine.connect() as other:
        await claim_checkpoint(other, HISTORY.checkpoint)  # holds the lock, as a folding process would
        assert await project_once(engine, HISTORY) == 0
        await other.rollback()
    assert await project_once(engine, HISTORY) == 3
