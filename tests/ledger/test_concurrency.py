"""Concurrent gated debits never overdraw an account and never lose an update.

Every charge here is ``email`` x 1000 on the sample card: exactly 1 credit (1,000,000 µcr), so
an account holding N credits can pay for exactly N of them, whatever the interleaving.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.decide import price_usage
from ledger.errors import AccountExists, PaymentRequired
from ledger.events import UsageMetered
from ledger.rates import RateCard
from ledger.service import Ledger
from ledger.store import Outcome
from ledger.verify import verify_account
from tests.ledger._charger import check_stream, run_chargers
from tests.ledger.conftest import OpenAccount

UCR = 1_000_000


def _charge(account_id: str) -> c.Charge:
    return c.Charge(account_id=account_id, operation="email", quantity=1000)


def test_the_charge_costs_exactly_one_credit(rate_card: RateCard) -> None:
    assert price_usage(rate_card, "email", 1000, None).amount_ucr == UCR


async def _fire(services: Sequence[Ledger], commands: Sequence[c.Command]) -> list[Outcome | BaseException]:
    """Every command at once, spread round-robin over ``services``; errors as values."""
    return list(await asyncio.gather(
        *(services[i % len(services)].execute(cmd) for i, cmd in enumerate(commands)), return_exceptions=True))


@pytest.mark.parametrize("writers", [1, 5], ids=["one-writer", "five-writers"])
async def test_fifty_charges_on_twenty_credits(
    engine: AsyncEngine, ledger: Ledger, contending_writers: list[Ledger], open_account: OpenAccount, writers: int,
) -> None:
    account = await open_account(credits_ucr=20 * UCR)
    before = (await ledger.balance(account)).version

    results = await _fire([ledger, *contending_writers][:writers], [_charge(account) for _ in range(50)])

    accepted = [r for r in results if isinstance(r, Outcome)]
    refused = [r for r in results if isinstance(r, PaymentRequired)]
    assert len(accepted) == 20, results
    assert len(refused) == 30, results
    for err in refused:
        # Charges are whole credits, so a refusal only ever happens on an empty account.
        assert (err.reason, err.required_ucr, err.remaining_ucr) == ("insufficient_balance", UCR, 0)
    # Each accepted charge saw a distinct balance: 19, 18, ..., 0 credits. A lost update would repeat one.
    afters = sorted(e.balance_after_ucr for r in accepted for e in r.events)
    assert afters == [n * UCR for n in range(20)]

    balance = await ledger.balance(account)
    assert balance.balance_ucr == 0
    assert balance.version == before + 20
    stream = await check_stream(engine, account)
    assert all(e.balance_after_ucr >= 0 for e in stream)
    new = stream[before:]
    assert [e.type for e in new] == ["UsageMetered"] * 20
    assert {e.event_id for e in new} == {str(e.event_id) for r in accepted for e in r.events}
    assert all(e.amount_ucr == -UCR for e in new)
    assert (await verify_account(engine, account)).clean


async def test_charges_from_five_processes(
    engine: AsyncEngine, database_url: str, clock: ManualClock, ledger: Ledger, open_account: OpenAccount,
    tmp_path: Path,
) -> None:
    account = await open_account(credits_ucr=20 * UCR)
    before = (await ledger.balance(account)).version

    results = await run_chargers(url=database_url, account_id=account, processes=5, count=10, now=clock.now(),
                                 workdir=tmp_path, operation="email", quantity=1000, max_batch=2, concurrency=3)

    everything = results.all
    assert len(everything) == 50
    outcomes = Counter(r.get("error", "ok") for r in everything)
    assert outcomes == {"ok": 20, "PaymentRequired": 30}, everything
    assert all(r["status"] == 402 and r["reason"] == "insufficient_balance" for r in everything if "error" in r)
    accepted_ids = [e for r in everything if "events" in r for e in r["events"]]
    assert len(accepted_ids) == len(set(accepted_ids)) == 20

    assert (await ledger.balance(account)).balance_ucr == 0
    stream = await check_stream(engine, account)  # versions 1..N, hash chain, balances after
    assert len(stream) == before + 20
    new = stream[before:]
    assert [e.type for e in new] == ["UsageMetered"] * 20
    assert {e.event_id for e in new} == set(accepted_ids)
    assert [e.balance_after_ucr for e in new] == [n * UCR for n in range(19, -1, -1)]
    assert all(e.balance_after_ucr >= 0 for e in stream)
    assert (await verify_account(engine, account)).clean


async def test_many_accounts_no_lost_update(
    engine: AsyncEngine, ledger: Ledger, contending_writers: list[Ledger], open_account: OpenAccount,
) -> None:
    # 20 accounts holding 3..15 credits; 10 charges of 1 credit each, all 200 interleaved.
    starts = {await open_account(credits_ucr=(3 + i % 13) * UCR, prefix="many"): 3 + i % 13 for i in range(20)}
    versions = {a: (await ledger.balance(a)).version for a in starts}
    commands = [_charge(a) for _ in range(10) for a in starts]

    results = await _fire([ledger, *contending_writers], commands)

    assert all(isinstance(r, Outcome | PaymentRequired) for r in results), results
    accepted = Counter(cmd.account_id for cmd, r in zip(commands, results, strict=True) if isinstance(r, Outcome))
    for account, start in starts.items():
        expected = min(start, 10)
        assert accepted[account] == expected, account
        balance = await ledger.balance(account)
        assert balance.balance_ucr == (start - expected) * UCR, account
        assert balance.version == versions[account] + expected
        stream = await check_stream(engine, account)
        assert [e.type for e in stream[versions[account]:]] == ["UsageMetered"] * expected
        assert min(e.balance_after_ucr for e in stream) >= 0
    metered = [e for r in results if isinstance(r, Outcome) for e in r.events]
    assert all(isinstance(e, UsageMetered) and e.cost_ucr == UCR for e in metered)
    assert len({e.event_id for e in metered}) == sum(min(s, 10) for s in starts.values())


async def test_mixed_credits_and_metered_debt_no_lost_update(
    engine: AsyncEngine, ledger: Ledger, contending_writers: list[Ledger], open_account: OpenAccount,
) -> None:
    """Metering (never refused, may create debt) races top-ups that settle the debt first."""
    accounts = [await open_account(credits_ucr=2 * UCR, prefix="debt") for _ in range(6)]
    commands: list[c.Command] = []
    for i in range(180):
        a = accounts[i % 6]
        if i % 3 == 2:
            commands.append(c.GrantCredits(account_id=a, amount_ucr=(i % 5 + 1) * 100_000, source="refund",
                                           reason="top-up"))
        else:
            commands.append(c.Meter(account_id=a, operation="sms", quantity=i % 7 + 1))  # 0.0075 credits each
    expected = {a: 2 * UCR for a in accounts}
    for cmd in commands:
        if isinstance(cmd, c.GrantCredits):
            expected[cmd.account_id] += cmd.amount_ucr
        elif isinstance(cmd, c.Meter):
            assert cmd.quantity is not None
            expected[cmd.account_id] -= cmd.quantity * 7_500

    results = await _fire([ledger, *contending_writers], commands)

    assert all(isinstance(r, Outcome) for r in results), results
    for a in accounts:
        balance = await ledger.balance(a)
        assert balance.balance_ucr == expected[a], a
        assert balance.debt_ucr == max(0, -expected[a])
        await check_stream(engine, a)
        assert (await verify_account(engine, a)).clean


async def test_concurrent_opens_of_one_account(engine: AsyncEngine, contending_writers: list[Ledger]) -> None:
    account = f"open-race-{secrets.token_hex(6)}"
    results = await _fire(contending_writers, [c.OpenAccount(account_id=account, name=account) for _ in range(12)])
    assert sum(isinstance(r, Outcome) for r in results) == 1, results
    assert sum(isinstance(r, AccountExists) for r in results) == 11, results
    stream = await check_stream(engine, account)
    assert [e.type for e in stream] == ["AccountOpened", "CreditsGranted"]
