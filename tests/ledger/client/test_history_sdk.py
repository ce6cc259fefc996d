"""The read models through the SDK against a live server, sync and async: the billing history as
pages (sequences of executions) and walked whole, per-deployment hours and credits, and the
activity feed with a reservation's returned credits named by the rule."""

from __future__ import annotations

import asyncio

import pytest

from ledger.client import AsyncClient, Client, InvalidRequestError
from ledger.db import make_engine
from tests.ledger.client.conftest import Live, NewAccount
from tests.projections.folding import fold_all


async def _fold(url: str) -> None:
    engine = make_engine(url, pool_size=2)
    try:
        await fold_all(engine)
    finally:
        await engine.dispose()


def test_history_and_activities_sync(live: Live, new_account: NewAccount, sdk_database_url: str) -> None:
    acct = new_account("5000")
    with Client(live.base_url, acct.member_key) as member:
        charged = [member.usage.charge("email", 10 + i, attribution={"execution": f"x-{i}"}) for i in range(7)]
        hold = member.reservations.create("training_h100_per_minute", 60)
        settled = member.reservations.settle(hold.id, 20)
        member.deployments.start("dep-sdk", "cpu-s")
    asyncio.run(_fold(sdk_database_url))

    with Client(live.base_url, acct.read_key) as reader:
        page = reader.credits.executions(limit=3)
        assert len(page) == 3 and page.has_more and page.next_cursor and page.lag_ms == 0
        assert page[0].machine_type == "cpu-s" and page.as_of_position > 0
        walked = list(reader.credits.iter_executions(page_size=2))
        assert [e.entry_id for e in walked[:3]] == [e.entry_id for e in page]
        assert len({e.entry_id for e in walked}) == len(walked)
        by_execution = {e.execution_id: e for e in walked}
        for i, c in enumerate(charged):
            assert by_execution[f"x-{i}"].credits_ucr == c.amount_ucr
            assert by_execution[f"x-{i}"].entry_id == c.id
        assert settled.charge.id in {e.entry_id for e in walked}

        (dep,) = reader.credits.deployment_history()
        assert (dep.deployment_id, dep.machine_type, dep.hours) == ("dep-sdk", "cpu-s", 1)
        assert dep.credits_ucr == page[0].credits_ucr

        (refund,) = reader.credits.activities(kind="refund")
        assert (refund.operation, refund.amount_ucr) == ("training_refund_h100", settled.released_ucr)
        feed = list(reader.credits.iter_activities(page_size=4))
        assert len({a.id for a in feed}) == len(feed)
        assert {"refund", "reservation", "execution", "grant"} <= {a.kind for a in feed}
        assert [a.id for a in reader.credits.iter_activities(page_size=1, kind="refund")] == [refund.id]

        # The ledger's entries stay where they were.
        assert reader.credits.history(limit=1)[0].id

        with pytest.raises(ValueError):
            reader.credits.executions(limit=0)
        with pytest.raises(InvalidRequestError):
            reader.credits.executions(cursor="not-a-cursor")
        with pytest.raises(InvalidRequestError):
            reader.credits.activities(kind="burn")


def test_history_and_activities_async(live: Live, new_account: NewAccount, sdk_database_url: str) -> None:
    acct = new_account("100")

    async def scenario() -> None:
        async with AsyncClient(live.base_url, acct.member_key) as member:
            for i in range(5):
                await member.usage.charge("sms", 1, attribution={"execution": f"a-{i}"})
        await _fold(sdk_database_url)
        async with AsyncClient(live.base_url, acct.read_key) as reader:
            page = await reader.credits.executions(limit=2)
            assert [e.execution_id for e in page] == ["a-4", "a-3"]
            walked = [e.execution_id async for e in reader.credits.iter_executions(page_size=2)]
            assert walked[:5] == [f"a-{i}" for i in reversed(range(5))]
            executions = [a async for a in reader.credits.iter_activities(page_size=2, kind="execution")]
            assert [a.execution_id for a in executions][:5] == walked[:5]
            assert (await reader.credits.deployment_history()).data == []
            assert len(await reader.credits.activities(limit=3)) == 3

    asyncio.run(scenario())
