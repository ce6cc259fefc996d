"""Idempotency keys: a replay returns the first result and appends nothing; a different request
under the same key is a 409; a refused command keeps no key."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.errors import IdempotencyConflict, InvalidQuantity, PaymentRequired, UnknownOperation
from ledger.events import AccountOpened, UsageMetered
from ledger.service import Ledger
from ledger.store import Outcome
from tests.ledger._charger import check_stream, run_chargers
from tests.ledger.conftest import OpenAccount, one_batch

UCR = 1_000_000


def _charge(account_id: str, key: str | None, quantity: int = 1000, operation: str = "email") -> c.Charge:
    return c.Charge(account_id=account_id, operation=operation, quantity=quantity, idempotency_key=key)


def _key() -> str:
    return f"idem-{secrets.token_hex(6)}"


async def _version(engine: AsyncEngine, account_id: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT version FROM accounts WHERE account_id = :a"),
                                     {"a": account_id}) or 0)


async def _event_count(engine: AsyncEngine, account_id: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM events WHERE account_id = :a"),
                                     {"a": account_id}) or 0)


async def _key_rows(engine: AsyncEngine, account_id: str, key: str) -> list[tuple[int, int]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT first_version, last_version FROM idempotency_keys WHERE account_id = :a AND key = :k"),
            {"a": account_id, "k": key})).all()
    return [(r.first_version, r.last_version) for r in rows]


def _ids(outcome: Outcome) -> list[str]:
    return [str(e.event_id) for e in outcome.events]


# ---- sequential replays --------------------------------------------------------------------

async def test_sequential_replay_returns_the_first_result(
    engine: AsyncEngine, ledger: Ledger, open_account: OpenAccount,
) -> None:
    account = await open_account(credits_ucr=1 * UCR)
    key = _key()
    before = await _version(engine, account)

    first = await ledger.execute(_charge(account, key))
    assert not first.replayed
    assert len(first.events) == 1 and isinstance(first.events[0], UsageMetered)
    assert await _version(engine, account) == before + 1
    assert await _key_rows(engine, account, key) == [(before + 1, before + 1)]

    # The account is now empty: a new charge would be a 402, the replay still returns the first result.
    second = await ledger.execute(_charge(account, key))
    assert second.replayed
    assert _ids(second) == _ids(first)
    assert second.events == first.events
    third = await ledger.execute(_charge(account, key))
    assert third.replayed and third.events == first.events
    assert await _version(engine, account) == before + 1
    assert await _event_count(engine, account) == before + 1
    assert (await ledger.balance(account)).balance_ucr == 0
    with pytest.raises(PaymentRequired):
        await ledger.execute(_charge(account, _key()))


async def test_replayed_open_account_is_not_account_exists(engine: AsyncEngine, ledger: Ledger) -> None:
    account = f"open-{secrets.token_hex(6)}"
    cmd = c.OpenAccount(account_id=account, name=account, plan="pro", idempotency_key="signup")
    first = await ledger.execute(cmd)
    again = await ledger.execute(cmd)
    assert isinstance(first.events[0], AccountOpened)
    assert again.replayed and again.events == first.events
    assert await _event_count(engine, account) == len(first.events)


# ---- concurrent replays --------------------------------------------------------------------

async def _fire(services: Sequence[Ledger], commands: Sequence[c.Command]) -> list[Outcome | BaseException]:
    return list(await asyncio.gather(
        *(services[i % len(services)].execute(cmd) for i, cmd in enumerate(commands)), return_exceptions=True))


@pytest.mark.parametrize("spread", ["one-writer", "many-transactions"])
async def test_twenty_concurrent_replays_append_once(
    engine: AsyncEngine, ledger: Ledger, contending_writers: list[Ledger], open_account: OpenAccount, spread: str,
) -> None:
    account = await open_account(credits_ucr=5 * UCR)
    key = _key()
    before = await _version(engine, account)
    services = [ledger] if spread == "one-writer" else contending_writers

    results = await _fire(services, [_charge(account, key) for _ in range(20)])

    outcomes = [r for r in results if isinstance(r, Outcome)]
    assert len(outcomes) == 20, results
    assert len({tuple(_ids(o)) for o in outcomes}) == 1
    assert sum(not o.replayed for o in outcomes) == 1
    assert await _version(engine, account) == before + 1
    stream = await check_stream(engine, account)
    assert [e.event_id for e in stream[before:]] == _ids(outcomes[0])
    assert (await ledger.balance(account)).balance_ucr == 4 * UCR
    assert await _key_rows(engine, account, key) == [(before + 1, before + 1)]


async def test_concurrent_open_account_with_one_key(engine: AsyncEngine, contending_writers: list[Ledger]) -> None:
    account = f"race-{secrets.token_hex(6)}"
    cmd = c.OpenAccount(account_id=account, name=account, plan="team", idempotency_key="signup")
    results = await _fire(contending_writers, [cmd] * 12)
    outcomes = [r for r in results if isinstance(r, Outcome)]
    assert len(outcomes) == 12, results
    assert len({tuple(_ids(o)) for o in outcomes}) == 1
    assert sum(not o.replayed for o in outcomes) == 1
    assert await _event_count(engine, account) == len(outcomes[0].events)


async def test_replays_from_three_processes_append_once(
    engine: AsyncEngine, database_url: str, clock: ManualClock, open_account: OpenAccount, tmp_path: Path,
) -> None:
    account = await open_account(credits_ucr=5 * UCR)
    key = _key()
    before = await _version(engine, account)

    results = await run_chargers(url=database_url, account_id=account, processes=3, count=5, now=clock.now(),
                                 workdir=tmp_path, key=key, max_batch=1, concurrency=3)

    everything = results.all
    assert len(everything) == 15
    assert all("events" in r for r in everything), everything
    assert len({tuple(r["events"]) for r in everything}) == 1
    assert sum(not r["replayed"] for r in everything) == 1
    stream = await check_stream(engine, account)
    assert len(stream) == before + 1
    assert [stream[-1].event_id] == everything[0]["events"]
    assert stream[-1].idempotency_key == key


# ---- conflicts and refusals ----------------------------------------------------------------

async def test_same_key_different_request_is_a_conflict(
    engine: AsyncEngine, ledger: Ledger, open_account: OpenAccount,
) -> None:
    account = await open_account(credits_ucr=10 * UCR)
    key = _key()
    first = await ledger.execute(_charge(account, key))
    version = await _version(engine, account)

    for different in (
        _charge(account, key, quantity=2000),
        _charge(account, key, operation="sms", quantity=1),
        c.Meter(account_id=account, operation="email", quantity=1000, idempotency_key=key),
        c.GrantCredits(account_id=account, amount_ucr=UCR, reason="x", idempotency_key=key),
    ):
        with pytest.raises(IdempotencyConflict) as refused:
            await ledger.execute(different)
        assert refused.value.status == 409
        assert refused.value.problem()["status"] == 409
        assert await _version(engine, account) == version
    assert await _key_rows(engine, account, key) == [(version, version)]
    assert (await ledger.execute(_charge(account, key))).events == first.events


async def test_refused_402_keeps_no_key(engine: AsyncEngine, ledger: Ledger, open_account: OpenAccount) -> None:
    account = await open_account()  # holds nothing
    key = _key()
    version = await _version(engine, account)
    with pytest.raises(PaymentRequired) as refused:
        await ledger.execute(_charge(account, key))
    assert refused.value.status == 402
    assert await _version(engine, account) == version
    assert await _key_rows(engine, account, key) == []

    await ledger.execute(c.GrantCredits(account_id=account, amount_ucr=UCR, source="purchase", reason="top-up"))
    after_top_up = await _version(engine, account)
    paid = await ledger.execute(_charge(account, key))
    assert not paid.replayed
    assert await _version(engine, account) == after_top_up + 1
    assert await _key_rows(engine, account, key) == [(after_top_up + 1, after_top_up + 1)]
    again = await ledger.execute(_charge(account, key))
    assert again.replayed and again.events == paid.events


async def test_refused_422_keeps_no_key(engine: AsyncEngine, ledger: Ledger, open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=5 * UCR)
    key = _key()
    version = await _version(engine, account)
    with pytest.raises(UnknownOperation) as unknown:
        await ledger.execute(_charge(account, key, operation="no-such-op"))
    assert unknown.value.status == 422
    with pytest.raises(InvalidQuantity):
        await ledger.execute(_charge(account, key, quantity=0))
    assert await _version(engine, account) == version
    assert await _key_rows(engine, account, key) == []
    # The corrected request under the same key is a first request, not a 409.
    fixed = await ledger.execute(_charge(account, key))
    assert not fixed.replayed
    assert await _version(engine, account) == version + 1


async def test_same_key_on_two_accounts_is_independent(
    engine: AsyncEngine, ledger: Ledger, open_account: OpenAccount,
) -> None:
    a = await open_account(credits_ucr=2 * UCR)
    b = await open_account(credits_ucr=2 * UCR)
    key = _key()
    va, vb = await _version(engine, a), await _version(engine, b)
    on_a = await ledger.execute(_charge(a, key))
    on_b = await ledger.execute(_charge(b, key, quantity=2000))  # a different body: still no conflict
    assert not on_a.replayed and not on_b.replayed
    assert set(_ids(on_a)).isdisjoint(_ids(on_b))
    assert on_b.events[0].account_id == b
    assert (await _version(engine, a), await _version(engine, b)) == (va + 1, vb + 1)
    replay_a = await ledger.execute(_charge(a, key))
    assert replay_a.replayed and replay_a.events == on_a.events
    assert (await ledger.balance(a)).balance_ucr == UCR
    assert (await ledger.balance(b)).balance_ucr == 0


# ---- replays inside one batch --------------------------------------------------------------

async def test_duplicates_within_one_batch_return_the_first_result(
    engine: AsyncEngine, single: Ledger, open_account: OpenAccount,
) -> None:
    account = await open_account(credits_ucr=5 * UCR)
    key = _key()
    before = await _version(engine, account)
    results = await one_batch(single, [_charge(account, key)] * 4)
    assert all(isinstance(r, Outcome) for r in results), results
    outcomes = [r for r in results if isinstance(r, Outcome)]
    assert [o.replayed for o in outcomes] == [False, True, True, True]
    assert all(o.events == outcomes[0].events for o in outcomes)
    assert await _version(engine, account) == before + 1
    assert (await single.balance(account)).balance_ucr == 4 * UCR
    assert await _key_rows(engine, account, key) == [(before + 1, before + 1)]


async def test_within_one_batch_a_conflict_and_a_refusal(
    engine: AsyncEngine, single: Ledger, open_account: OpenAccount,
) -> None:
    rich = await open_account(credits_ucr=5 * UCR)
    empty = await open_account()
    k1, k2 = _key(), _key()
    v_rich, v_empty = await _version(engine, rich), await _version(engine, empty)
    results = await one_batch(single, [
        _charge(rich, k1),
        _charge(rich, k1, quantity=3000),  # same key, different body: 409
        _charge(empty, k2),  # 402: keeps no key ...
        c.GrantCredits(account_id=empty, amount_ucr=UCR, source="purchase", reason="top-up"),
        _charge(empty, k2),  # ... so the same key, after the top-up in the same batch, is a first request
        _charge(empty, k2),  # and this one replays it
    ])
    first, conflict, refused, grant, paid, replay = results
    assert isinstance(first, Outcome) and not first.replayed
    assert isinstance(conflict, IdempotencyConflict)
    assert isinstance(refused, PaymentRequired)
    assert isinstance(grant, Outcome)
    assert isinstance(paid, Outcome) and not paid.replayed
    assert isinstance(replay, Outcome) and replay.replayed and replay.events == paid.events
    assert await _version(engine, rich) == v_rich + 1
    assert await _version(engine, empty) == v_empty + 2
    assert (await single.balance(rich)).balance_ucr == 4 * UCR
    assert (await single.balance(empty)).balance_ucr == 0
    assert await _key_rows(engine, empty, k2) == [(v_empty + 2, v_empty + 2)]


async def test_a_keyed_command_that_appends_nothing_keeps_its_key_on_its_own(
    engine: AsyncEngine, ledger: Ledger, open_account: OpenAccount,
) -> None:
    """Nothing is due to expire, so no event; the key is still stored, alone or with neighbours."""
    account = await open_account(credits_ucr=1_000_000)
    first = await ledger.execute(c.ExpireGrants(account_id=account, idempotency_key="alone"))
    assert first.events == () and not first.replayed
    again = await ledger.execute(c.ExpireGrants(account_id=account, idempotency_key="alone"))
    assert again.replayed
    async with engine.connect() as conn:
        keys = (await conn.execute(text(
            "SELECT key FROM idempotency_keys WHERE account_id = :a AND key = 'alone'"), {"a": account})).all()
    assert len(keys) == 1
