"""The projector framework: spans folded once with their checkpoint, rebuilds that swap in, and
``differences`` that names a row a fresh fold would not make."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.events import Attribution
from ledger.service import Ledger
from projections.catalogue import PROJECTORS
from projections.history import HISTORY
from projections.rebuild import differences, rebuild
from projections.runner import Projections, project_once
from tests.projections.conftest import OpenAccount


async def _usage(ledger: Ledger, account: str, n: int) -> None:
    for i in range(n):
        await ledger.execute(c.Meter(account_id=account, operation="gpt-4o",
                                     quantities={"input_tokens": 1000 + i, "output_tokens": 10 * i},
                                     attribution=Attribution(agent=f"agent-{i % 3}", flow="f1")))


async def _rows(engine: AsyncEngine, table: str) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4"))).all()]


async def test_small_spans_fold_what_one_span_folds(engine: AsyncEngine, ledger: Ledger,
                                                     open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=10**9)
    await _usage(ledger, account, 25)
    while await project_once(engine, HISTORY, batch=3):
        pass
    for p in PROJECTORS:
        while await project_once(engine, p, batch=7):
            pass
        assert await differences(engine, p) == []
    async with engine.connect() as conn:
        n = (await conn.execute(text("SELECT count(*) FROM proj_executions WHERE account_id = :a"),
                                {"a": account})).scalar()
    assert n == 25 + 0  # every usage event, once


async def test_a_changed_row_is_named_and_a_rebuild_puts_it_right(engine: AsyncEngine, ledger: Ledger,
                                                                  open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=10**9)
    await _usage(ledger, account, 5)
    await Projections(engine).catch_up()
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
