"""The event store's batch: refused commands get their typed error and record nothing while their
neighbours commit; bad input never reaches the log; coupon stock holds across accounts; the
inline state is the fold of the events; a batch failing as a whole is retried one by one."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.db import make_engine
from ledger.errors import (
    CommandFailed,
    CouponRejected,
    InvalidQuantity,
    InvalidRequest,
    LedgerError,
    NotFound,
    OutcomeUnknown,
    OutOfRange,
    PaymentRequired,
    PurchaseRejected,
    RefundRejected,
    UnknownAccount,
    UnknownOperation,
    UnknownPack,
)
from ledger.events import (
    AccountOpened,
    Attribution,
    CouponApplied,
    CreditsGranted,
    CreditsPurchased,
    CreditsReserved,
    Event,
    RefundIssued,
    UsageMetered,
)
from ledger.money import MAX_SPEND_UCR, MAX_UCR
from ledger.rate_cards import ensure_rate_card
from ledger.rates import RateCard, coupon_code
from ledger.service import Ledger
from ledger.state import AccountState, apply
from ledger.store import EventStore, Outcome, Result, lock_key, read_versions
from ledger.store import connections as store_connections
from ledger.store.sql import literal
from ledger.verify import verify
from tests.ledger._charger import check_stream
from tests.ledger.conftest import T0, OpenAccount, one_batch

UCR = 1_000_000


def _charge(account_id: str, quantity: int = 1000, **kw: Any) -> c.Charge:
    return c.Charge(account_id=account_id, operation="email", quantity=quantity, **kw)


async def _version(engine: AsyncEngine, account_id: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT version FROM accounts WHERE account_id = :a"),
                                     {"a": account_id}) or 0)


async def _count(engine: AsyncEngine, sql: str, **params: Any) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text(sql), params) or 0)


# ---- one batch, some refused -----------------------------------------------------------------

async def test_one_batch_refused_commands_fail_alone(
    engine: AsyncEngine, single: Ledger, open_account: OpenAccount,
) -> None:
    rich = await open_account(credits_ucr=50 * UCR)
    poor = await open_account(credits_ucr=1 * UCR)
    other = await open_account(credits_ucr=5 * UCR)
    new = f"new-{secrets.token_hex(6)}"
    ghost = f"ghost-{secrets.token_hex(6)}"
    before = {a: await _version(engine, a) for a in (rich, poor, other)}

    results = await one_batch(single, [
        _charge(rich),  # 0 ok
        c.Charge(account_id=rich, operation="no-such-op", quantity=1),  # 1 unknown slug
        _charge(other, quantity=0),  # 2 zero quantity
        _charge(ghost),  # 3 unknown account
        _charge(poor, quantity=2000),  # 4 two credits, holds one
        c.RedeemCoupon(account_id=rich, code="EXPIRED2025"),  # 5 expired coupon
        _charge(poor),  # 6 ok: the refused one spent nothing
        _charge(other, quantity=-1),  # 7 negative quantity
        c.Meter(account_id=other, operation="sms", quantity=100),  # 8 ok (0.75 credits)
        _charge(poor),  # 9 now empty
        c.GrantCredits(account_id=other, amount_ucr=UCR, source="refund", reason="goodwill"),  # 10 ok
        c.RedeemCoupon(account_id=other, code="WELCOME10"),  # 11 ok
        c.OpenAccount(account_id=new, name=new),  # 12 ok
        _charge(new),  # 13 ok: signup credits
        _charge(rich),  # 14 ok
    ])

    ok = {0, 6, 8, 10, 11, 12, 13, 14}
    for i, r in enumerate(results):
        assert isinstance(r, Outcome) == (i in ok), (i, r)
    assert isinstance(results[1], UnknownOperation) and results[1].status == 422
    assert isinstance(results[2], InvalidQuantity) and results[2].status == 422
    assert isinstance(results[3], UnknownAccount) and results[3].status == 404
    assert isinstance(results[4], PaymentRequired)
    assert (results[4].required_ucr, results[4].remaining_ucr) == (2 * UCR, 1 * UCR)
    assert isinstance(results[5], CouponRejected) and results[5].reason == "expired"
    assert isinstance(results[7], InvalidQuantity)
    assert isinstance(results[9], PaymentRequired) and results[9].remaining_ucr == 0

    assert await _version(engine, rich) == before[rich] + 2
    assert await _version(engine, poor) == before[poor] + 1
    assert await _version(engine, other) == before[other] + 3
    assert (await single.balance(rich)).balance_ucr == 48 * UCR
    assert (await single.balance(poor)).balance_ucr == 0
    assert (await single.balance(other)).balance_ucr == 5 * UCR - 750_000 + UCR + 10 * UCR
    opened = results[12]
    assert isinstance(opened, Outcome) and isinstance(opened.events[0], AccountOpened)
    assert [e.type for e in await check_stream(engine, new)] == ["AccountOpened", "CreditsGranted", "UsageMetered"]
    assert (await single.balance(new)).balance_ucr == 4 * UCR
    assert await _count(engine, "SELECT count(*) FROM events WHERE account_id = :a", a=ghost) == 0
    assert await _count(engine, "SELECT count(*) FROM accounts WHERE account_id = :a", a=ghost) == 0
    # What the batch returned is exactly what it stored.
    async with engine.connect() as conn:
        for r in results:
            if isinstance(r, Outcome):
                account = r.events[0].account_id
                stored = await read_versions(conn, account, 1, 10**6)
                assert [e for e in stored if e.event_id in {x.event_id for x in r.events}] == list(r.events)
    for a in (rich, poor, other, new):
        await check_stream(engine, a)


# ---- bad input records nothing ---------------------------------------------------------------

_EMAIL = {"operation": "email", "quantity": 1000}
_GRANT = {"amount_ucr": 1_000_000, "reason": "x"}


@pytest.mark.parametrize(("model", "valid", "field", "bad"), [
    (c.Charge, _EMAIL, "quantity", 1.5),
    (c.Charge, _EMAIL, "quantity", 1000.0),
    (c.Charge, _EMAIL, "quantity", "1000"),
    (c.Charge, _EMAIL, "quantity", True),
    (c.Charge, {"operation": "gpt-4o", "quantities": {"input_tokens": 10}}, "quantities", {"input_tokens": 1.5}),
    (c.Meter, _EMAIL, "quantity", 2.0),
    (c.GrantCredits, _GRANT, "amount_ucr", 1.5),
    (c.GrantCredits, _GRANT, "amount_ucr", 1_000_000.0),
    (c.GrantCredits, _GRANT, "amount_ucr", "1000000"),
    (c.GrantCredits, _GRANT, "amount_ucr", 0),
    (c.GrantCredits, _GRANT, "amount_ucr", -1),
    (c.Reserve, {"operation": "gpu-s", "amount_ucr": 2}, "amount_ucr", 2.5),
    (c.RecordPurchase, {"kind": "custom", "cents_paid": 1000}, "cents_paid", 1000.0),
    (c.RecordPurchase, {"kind": "subscription", "cents_paid": 2000, "credits_ucr": 2}, "credits_ucr", 1.5),
    (c.IssueRefund, {"direction": "credit", "amount_ucr": 1, "reason": "x"}, "amount_ucr", 0.5),
    (c.SetBudget, {"monthly_limit_ucr": 10}, "monthly_limit_ucr", 10.0),
], ids=lambda v: v.__name__ if isinstance(v, type) else repr(v) if not isinstance(v, dict) else "")
def test_the_command_models_refuse_a_float_a_string_or_a_non_positive_amount(
    model: type[c.Command], valid: dict[str, Any], field: str, bad: object,
) -> None:
    model.model_validate({"account_id": "acct-x", **valid})  # the same command with a proper int is fine
    with pytest.raises(ValidationError) as refused:
        model.model_validate({"account_id": "acct-x", **valid, field: bad})
    assert {err["loc"][0] for err in refused.value.errors()} == {field}


async def test_bad_input_through_the_ledger_records_nothing(
    engine: AsyncEngine, ledger: Ledger, open_account: OpenAccount,
) -> None:
    account = await open_account(credits_ucr=5 * UCR)
    ghost = f"ghost-{secrets.token_hex(6)}"
    past = T0 - timedelta(days=1)
    cases: list[tuple[c.Command, type[LedgerError], int, str | None]] = [
        (c.Charge(account_id=account, operation="no-such-op", quantity=1), UnknownOperation, 422, None),
        (_charge(account, quantity=0), InvalidQuantity, 422, None),
        (_charge(account, quantity=-1), InvalidQuantity, 422, None),
        (c.Charge(account_id=account, operation="email", quantities={"messages": 0}), InvalidQuantity, 422, None),
        (c.Charge(account_id=account, operation="email", quantities={"tokens": 5}), InvalidQuantity, 422, None),
        (c.Charge(account_id=account, operation="email", quantities={}), InvalidQuantity, 422, None),
        (c.Charge(account_id=account, operation="email", quantity=1, quantities={"messages": 1}),
         InvalidQuantity, 422, None),
        (c.Charge(account_id=account, operation="email"), InvalidQuantity, 422, None),
        (c.Meter(account_id=account, operation="email", quantity=0), InvalidQuantity, 422, None),
        (c.Meter(account_id=account, operation="no-such-op", quantity=1), UnknownOperation, 422, None),
        (c.Meter(account_id=account, operation="email", quantity=1, occurred_at=T0 + timedelta(days=1)),
         InvalidRequest, 422, None),
        (c.Reserve(account_id=account, operation="no-such-op", quantity=1), UnknownOperation, 422, None),
        (c.RecordPurchase(account_id=account, kind="pack", pack_id="no-such-pack", cents_paid=100),
         UnknownPack, 422, None),
        (c.GrantCredits(account_id=account, amount_ucr=UCR, reason="late", expires_at=past), InvalidRequest, 422,
         None),
        (c.RedeemCoupon(account_id=account, code="EXPIRED2025"), CouponRejected, 422, "expired"),
        (c.RedeemCoupon(account_id=account, code="NO-SUCH-CODE"), CouponRejected, 422, "unknown"),
        (_charge(ghost), UnknownAccount, 404, None),
        (c.GrantCredits(account_id=ghost, amount_ucr=UCR, reason="x"), UnknownAccount, 404, None),
        (_charge(account, quantity=6000), PaymentRequired, 402, "insufficient_balance"),
    ]
    version = await _version(engine, account)
    balance = (await ledger.balance(account)).balance_ucr
    for i, (cmd, error, status, reason) in enumerate(cases):
        key = f"bad-{i}"
        keyed = cmd.model_copy(update={"idempotency_key": key})
        with pytest.raises(error) as refused:
            await ledger.execute(keyed)
        assert refused.value.status == status, cmd
        if reason is not None:
            assert getattr(refused.value, "reason", None) == reason
        assert await _version(engine, account) == version, cmd
        assert (await ledger.balance(account)).balance_ucr == balance
        assert await _count(engine, "SELECT count(*) FROM idempotency_keys WHERE key = :k AND account_id"
                                    " IN (:a, :g)", k=key, a=account, g=ghost) == 0
    assert await _count(engine, "SELECT count(*) FROM events WHERE account_id = :g", g=ghost) == 0
    assert await _count(engine, "SELECT count(*) FROM accounts WHERE account_id = :g", g=ghost) == 0
    assert await _count(engine, "SELECT count(*) FROM coupon_redemptions WHERE account_id = :a", a=account) == 0
    await check_stream(engine, account)


# ---- coupon stock across accounts ------------------------------------------------------------

@dataclass
class CouponWorld:
    engine: AsyncEngine
    ledger: Ledger
    clock: ManualClock

    def ledger_like(self, **kw: Any) -> Ledger:
        return Ledger(self.engine, self.clock, self.ledger.card, **kw)


def _with_coupon(card: RateCard, code: str, max_redemptions: int) -> RateCard:
    data = card.model_dump()
    data["version"] = f"{card.version}+{code.lower()}"
    data["coupons"][code] = {"code": code, "credits": "2", "max_redemptions": max_redemptions}
    return RateCard.model_validate(data)


@pytest_asyncio.fixture(loop_scope="session")
async def coupons(fresh_database_url: str) -> AsyncIterator[CouponWorld]:
    """A fresh database whose current card adds coupon ``LIMITED3`` (at most 3 redemptions)."""
    engine = make_engine(fresh_database_url, pool_size=8)
    clock = ManualClock(T0)
    ledger = Ledger(engine, clock, await ensure_rate_card(engine))
    assert await ledger.load_rates(_with_coupon(ledger.card, "LIMITED3", 3), "test")
    assert ledger.card.coupons["LIMITED3"].max_redemptions == 3
    await ledger.start()
    try:
        yield CouponWorld(engine, ledger, clock)
    finally:
        await ledger.stop()
        await engine.dispose()


async def _redeemed_count(engine: AsyncEngine, code: str) -> int:
    return await _count(engine, "SELECT redeemed_count FROM coupons WHERE code = :c", c=code)


@pytest.mark.parametrize("spread", ["one-batch", "ten-transactions"])
async def test_coupon_max_redemptions_hold_across_accounts(coupons: CouponWorld, spread: str) -> None:
    accounts = [f"coupon-{i}" for i in range(10)]
    for a in accounts:
        await coupons.ledger.execute(c.OpenAccount(account_id=a, name=a))
    redeem = [c.RedeemCoupon(account_id=a, code="LIMITED3") for a in accounts]
    results: list[Result | BaseException]
    if spread == "one-batch":
        one = coupons.ledger_like(concurrency=1)
        await one.start()
        try:
            results = list(await one_batch(one, redeem))
        finally:
            await one.stop()
    else:
        writers = [coupons.ledger_like(max_batch=1, concurrency=2) for _ in range(5)]
        for w in writers:
            await w.start()
        try:
            results = list(await asyncio.gather(
                *(writers[i % 5].execute(cmd) for i, cmd in enumerate(redeem)), return_exceptions=True))
        finally:
            for w in writers:
                await w.stop()

    applied = [r for r in results if isinstance(r, Outcome)]
    rejected = [r for r in results if isinstance(r, CouponRejected)]
    assert len(applied) == 3 and len(rejected) == 7, results
    assert all(r.reason == "used_up" for r in rejected)
    assert all([type(e) for e in r.events] == [CouponApplied] for r in applied)
    winners = {r.events[0].account_id for r in applied}
    assert await _redeemed_count(coupons.engine, "LIMITED3") == 3
    assert await _count(coupons.engine, "SELECT count(*) FROM coupon_redemptions WHERE code = 'LIMITED3'") == 3
    assert await _count(coupons.engine, "SELECT count(*) FROM events WHERE type = 'CouponApplied'") == 3
    for a in accounts:
        balance = (await coupons.ledger.balance(a)).balance_ucr
        assert balance == 5 * UCR + (2 * UCR if a in winners else 0)

    # A winner trying again is told it already redeemed (before being told the coupon is used up).
    winner = sorted(winners)[0]
    with pytest.raises(CouponRejected) as again:
        await coupons.ledger.execute(c.RedeemCoupon(account_id=winner, code="LIMITED3"))
    assert again.value.reason == "already_redeemed"
    assert await _redeemed_count(coupons.engine, "LIMITED3") == 3


async def test_the_same_account_redeeming_twice(coupons: CouponWorld) -> None:
    for a in ("twice-seq", "twice-batch"):
        await coupons.ledger.execute(c.OpenAccount(account_id=a, name=a))
    first = await coupons.ledger.execute(c.RedeemCoupon(account_id="twice-seq", code="WELCOME10"))
    assert isinstance(first.events[0], CouponApplied)
    with pytest.raises(CouponRejected) as second:
        await coupons.ledger.execute(c.RedeemCoupon(account_id="twice-seq", code="WELCOME10"))
    assert second.value.reason == "already_redeemed"

    one = coupons.ledger_like(concurrency=1)
    await one.start()
    try:
        applied, rejected = await one_batch(one, [c.RedeemCoupon(account_id="twice-batch", code="WELCOME10")] * 2)
    finally:
        await one.stop()
    assert isinstance(applied, Outcome)
    assert isinstance(rejected, CouponRejected) and rejected.reason == "already_redeemed"
    assert await _redeemed_count(coupons.engine, "WELCOME10") == 2
    for a in ("twice-seq", "twice-batch"):
        assert (await coupons.ledger.balance(a)).balance_ucr == 15 * UCR


async def test_coupon_codes_ignore_case_over_the_service(coupons: CouponWorld) -> None:
    """``welcome10`` is the card's ``WELCOME10``: one code, one redemption per account, one stock."""
    for a in ("case-seq", "case-batch"):
        await coupons.ledger.execute(c.OpenAccount(account_id=a, name=a))
    before = await _redeemed_count(coupons.engine, "WELCOME10")
    first = await coupons.ledger.execute(c.RedeemCoupon(account_id="case-seq", code="welcome10"))
    assert [(type(e), e.code) for e in first.events] == [(CouponApplied, "WELCOME10")]  # type: ignore[union-attr]
    with pytest.raises(CouponRejected) as second:
        await coupons.ledger.execute(c.RedeemCoupon(account_id="case-seq", code="WELCOME10"))
    assert second.value.reason == "already_redeemed"
    one = coupons.ledger_like(concurrency=1)
    await one.start()
    try:
        applied, rejected = await one_batch(one, [c.RedeemCoupon(account_id="case-batch", code="Welcome10"),
                                                  c.RedeemCoupon(account_id="case-batch", code="WELCOME10")])
    finally:
        await one.stop()
    assert isinstance(applied, Outcome)
    assert isinstance(rejected, CouponRejected) and rejected.reason == "already_redeemed"
    assert await _redeemed_count(coupons.engine, "WELCOME10") == before + 2
    assert await _count(coupons.engine, "SELECT count(*) FROM coupons WHERE lower(code) = 'welcome10'") == 1
    assert await _count(coupons.engine, "SELECT count(*) FROM coupon_redemptions WHERE account_id LIKE 'case-%'"
                                        " AND code = 'WELCOME10'") == 2
    for a in ("case-seq", "case-batch"):
        assert (await coupons.ledger.balance(a)).balance_ucr == 15 * UCR


async def test_a_redemption_stored_under_another_spelling_still_counts(coupons: CouponWorld) -> None:
    """A card that once spelt a code ``Spring`` and now ``SPRING``: the account redeemed it already."""
    await coupons.ledger.execute(c.OpenAccount(account_id="spelling", name="spelling"))
    old = _with_coupon(coupons.ledger.card, "Spring", 100)
    then = Ledger(coupons.engine, coupons.clock, old)
    await then.start()
    try:
        await then.execute(c.RedeemCoupon(account_id="spelling", code="Spring"))
    finally:
        await then.stop()
    now = _with_coupon(coupons.ledger.card, "SPRING", 100)
    later = Ledger(coupons.engine, coupons.clock, now)
    await later.start()
    try:
        with pytest.raises(CouponRejected) as again:
            await later.execute(c.RedeemCoupon(account_id="spelling", code="spring"))
    finally:
        await later.stop()
    assert again.value.reason == "already_redeemed"
    assert await _count(coupons.engine, "SELECT count(*) FROM coupon_redemptions WHERE account_id = 'spelling'"
                                        " AND code = 'Spring'") == 1


async def test_coupon_stock_holds_for_an_account_opened_in_the_same_batch(coupons: CouponWorld) -> None:
    one = coupons.ledger_like(concurrency=1)
    await one.start()
    try:
        outcomes = []
        for i in range(5):
            # A sign-up with a coupon: open the account and redeem, in one batch.
            a = f"signup-{i}"
            opened, redeemed = await one_batch(one, [c.OpenAccount(account_id=a, name=a),
                                                      c.RedeemCoupon(account_id=a, code="LIMITED3")])
            assert isinstance(opened, Outcome)
            outcomes.append(redeemed)
    finally:
        await one.stop()
    assert await _redeemed_count(coupons.engine, "LIMITED3") <= 3
    assert sum(isinstance(r, Outcome) for r in outcomes) == 3
    assert [r.reason for r in outcomes if isinstance(r, CouponRejected)] == ["used_up"] * 2


# ---- inline state is the fold of the events --------------------------------------------------

async def test_inline_state_matches_a_fold_of_the_events(
    engine: AsyncEngine, ledger: Ledger, clock: ManualClock,
) -> None:
    account = f"fold-{secrets.token_hex(6)}"
    run = ledger.execute
    await run(c.OpenAccount(account_id=account, name=account, plan="pro"))  # 5 signup + 25 allowance
    bought = await run(c.RecordPurchase(account_id=account, kind="pack", pack_id="builder", cents_paid=5000))
    purchase = bought.events[0]
    assert isinstance(purchase, CreditsPurchased)
    await run(c.RedeemCoupon(account_id=account, code="WELCOME10"))
    await run(c.SetBudget(account_id=account, monthly_limit_ucr=500 * UCR))
    await run(c.SetLimit(account_id=account, scope="agent", subject="bot", per_day_ucr=80 * UCR))
    who = Attribution(agent="bot", member="ann", flow="triage", run="r1")
    for _ in range(3):
        await run(c.Charge(account_id=account, operation="gpt-4o",
                           quantities={"input_tokens": 400_000, "output_tokens": 100_000}, attribution=who))
    held = await run(c.Reserve(account_id=account, operation="training_h100_per_minute", quantity=60))
    reservation = held.events[-1]
    assert isinstance(reservation, CreditsReserved)
    await run(c.Settle(account_id=account, reservation_id=reservation.reservation_id, quantity=25,
                       attribution=Attribution(member="ann")))
    granted = await run(c.GrantCredits(account_id=account, amount_ucr=3 * UCR, reason="trial",
                                       expires_at=clock.now() + timedelta(days=1)))
    assert isinstance(granted.events[-1], CreditsGranted)
    clock.advance(timedelta(days=2))
    await run(c.ExpireGrants(account_id=account))
    # Metered usage past every grant is debt; a purchase settles it; a clawback takes back what is left.
    await run(c.Meter(account_id=account, operation="gpt-4o", quantities={"output_tokens": 10_000_000},
                      attribution=who))
    await run(c.RecordPurchase(account_id=account, kind="pack", pack_id="starter", cents_paid=1000))
    await run(c.IssueRefund(account_id=account, direction="clawback", purchase_id=purchase.event_id,
                            amount_ucr=2 * UCR, reason="refunded in Stripe"))
    await run(c.IssueRefund(account_id=account, direction="credit", amount_ucr=UCR, reason="failed run"))

    async with engine.connect() as conn:
        version = await _version(engine, account)
        events: list[Event] = await read_versions(conn, account, 1, version)
        row = (await conn.execute(text(
            "SELECT balance_ucr, debt_ucr, reserved_ucr, spent_ucr, status, plan, version FROM accounts"
            " WHERE account_id = :a"),
            {"a": account})).one()
        grants = {r.grant_id: (r.source, r.original_ucr, r.remaining_ucr, r.expires_at)
                  for r in (await conn.execute(text(
                      "SELECT grant_id, source, original_ucr, remaining_ucr, expires_at FROM grants"
                      " WHERE account_id = :a"), {"a": account})).all()}
        counters = {(r.scope, r.subject, r.period): r.spent_ucr
                    for r in (await conn.execute(text(
                        "SELECT scope, subject, period, spent_ucr FROM spend_counters WHERE account_id = :a"),
                        {"a": account})).all()}
        reservations = {r.reservation_id: (r.held_ucr, r.status) for r in (await conn.execute(text(
            "SELECT reservation_id, held_ucr, status FROM reservations WHERE account_id = :a"),
            {"a": account})).all()}
        limits = {(r.scope, r.subject): (r.per_run_ucr, r.per_day_ucr, r.per_month_ucr)
                  for r in (await conn.execute(text(
                      "SELECT scope, subject, per_run_ucr, per_day_ucr, per_month_ucr FROM limits"
                      " WHERE account_id = :a"), {"a": account})).all()}
        redeemed = set((await conn.execute(text(
            "SELECT code FROM coupon_redemptions WHERE account_id = :a"), {"a": account})).scalars())

    assert len(events) == version
    state = AccountState(account_id=account)
    for e in events:
        state = apply(state, e)
        assert e.balance_after_ucr == state.balance_ucr, e
    kinds = {type(e).__name__ for e in events}
    assert {"UsageMetered", "DebtSettled", "GrantExpired", "CreditsReleased", "RefundIssued"} <= kinds
    assert any(isinstance(e, UsageMetered) and e.debt_added_ucr > 0 for e in events)

    assert (row.balance_ucr, row.debt_ucr, row.reserved_ucr, row.spent_ucr, row.status, row.plan, row.version) == (
        state.balance_ucr, state.debt_ucr, state.reserved_ucr, state.spent_ucr, state.status, state.plan, version)
    assert state.spent_ucr == counters[("account", "", "M2026-11")] > 0  # every debit fell in November
    assert grants == {g.grant_id: (g.source, g.original_ucr, g.remaining_ucr, g.expires_at)
                      for g in state.grants.values()}
    assert counters == dict(state.loaded_counters())
    assert counters[("agent", "bot", "D2026-11-01")] > 0 and counters[("member", "ann", "M2026-11")] > 0
    assert reservations == {r.reservation_id: (r.held_ucr, r.status) for r in state.reservations.values()}
    assert limits == {k: (v.per_run_ucr, v.per_day_ucr, v.per_month_ucr) for k, v in state.limits.items()}
    assert redeemed == {"WELCOME10"}  # the card's spelling; the fold keeps the code as compared
    assert set(state.coupons_redeemed) == {coupon_code("WELCOME10")}
    await check_stream(engine, account)


# ---- a batch that fails as a whole -----------------------------------------------------------

async def test_a_batch_failing_as_a_whole_is_retried_one_by_one(
    engine: AsyncEngine, single: Ledger, open_account: OpenAccount,
) -> None:
    """A NUL character cannot be stored in ``jsonb``: the multi-row INSERT of the whole batch fails
    in PostgreSQL, the writer retries each command alone, and only the poisoned one fails (as
    ``CommandFailed``), without charging anyone twice. Validation refuses NUL characters, so the
    poison is smuggled past it with ``model_construct``."""
    a = await open_account(credits_ucr=10 * UCR)
    b = await open_account(credits_ucr=10 * UCR)
    va, vb = await _version(engine, a), await _version(engine, b)
    poison = _charge(a, attribution=Attribution.model_construct(flow="bad\x00flow"))
    commands = [_charge(a), _charge(b), poison, _charge(a), _charge(b)]
    committed_before = len(single.writer.batch_sizes)

    futures = [single.writer.submit_nowait(cmd) for cmd in commands]
    results = await asyncio.gather(*futures, return_exceptions=True)

    # The batch of five failed and was never recorded; each command then ran alone, four committed.
    assert single.writer.batch_sizes[committed_before:] == [1, 1, 1, 1]
    assert isinstance(results[2], CommandFailed) and results[2].status == 500
    for i in (0, 1, 3, 4):
        assert isinstance(results[i], Outcome), results[i]
    assert (await _version(engine, a), await _version(engine, b)) == (va + 2, vb + 2)
    assert (await single.balance(a)).balance_ucr == 8 * UCR
    assert (await single.balance(b)).balance_ucr == 8 * UCR
    for account in (a, b):
        stream = await check_stream(engine, account)
        assert all("\x00" not in str(e.data) for e in stream)


# ---- a COMMIT lost in flight -----------------------------------------------------------------

class _KilledBeforeCommit(EventStore):
    """Decides and prepares its write, then loses its connection just before the round trip that
    writes and commits."""

    async def _prepared(self, pg: Any, sql: str) -> str:
        out = await super()._prepared(pg, sql)
        async with self.engine.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pg.get_server_pid()})
        return out


async def test_a_commit_lost_in_flight_is_unknown_and_the_connection_is_dropped(
    engine: AsyncEngine, single: Ledger, open_account: OpenAccount, clock: ManualClock, rate_card: RateCard,
) -> None:
    """The batch runs on the asyncpg connection behind SQLAlchemy's back: when the server goes away
    at COMMIT the caller gets ``OutcomeUnknown`` (nothing was recorded here) and the dead
    connection is invalidated, so every later batch from the same pool still commits."""
    a = await open_account(credits_ucr=10 * UCR)
    before = await _version(engine, a)
    doomed = _KilledBeforeCommit(engine, clock, lambda: rate_card)
    with pytest.raises(OutcomeUnknown):
        await doomed.run_batch([_charge(a)])
    assert await _version(engine, a) == before

    # Every pooled connection is healthy: more batches than the pool holds, all committed.
    store = EventStore(engine, clock, lambda: rate_card)
    for _ in range(engine.pool.size() + 2):  # type: ignore[attr-defined]
        (result,) = await store.run_batch([_charge(a, quantity=1)])
        assert isinstance(result, Outcome)
    await store.close()
    assert await _version(engine, a) == before + engine.pool.size() + 2  # type: ignore[attr-defined]
    assert (await single.balance(a)).balance_ucr == 10 * UCR - (engine.pool.size() + 2) * 1000  # type: ignore[attr-defined]


# ---- rows travel as JSON ---------------------------------------------------------------------

@pytest.mark.parametrize("text_", ['quote " and \\ backslash', "é ü 中文 🚀", "tab\tnew\nline \x7f \x01",
                                   '{"x": [1]}'])
async def test_any_text_round_trips_through_the_batch_rows(engine: AsyncEngine, ledger: Ledger,
                                                          text_: str) -> None:
    """Ids, names, keys and attribution reach their columns exactly, and verify agrees."""
    account = f"txt-{secrets.token_hex(4)}-{text_}"
    await ledger.execute(c.OpenAccount(account_id=account, name=text_, plan="pro", idempotency_key=text_))
    who = Attribution(agent=text_, member=text_, run=text_)
    charged = await ledger.execute(c.Charge(account_id=account, operation="email", quantity=3, attribution=who,
                                            idempotency_key=f"k {text_}"))
    async with engine.connect() as conn:
        name = await conn.scalar(text("SELECT name FROM accounts WHERE account_id = :a"), {"a": account})
        keys = set((await conn.execute(text(
            "SELECT key FROM idempotency_keys WHERE account_id = :a"), {"a": account})).scalars())
        subjects = set((await conn.execute(text(
            "SELECT subject FROM spend_counters WHERE account_id = :a AND scope = 'agent'"),
            {"a": account})).scalars())
        version = await _version(engine, account)
        stored = await read_versions(conn, account, 1, version)
    assert name == text_ and keys == {text_, f"k {text_}"} and subjects == {text_}
    assert stored[-1] == charged.events[-1]
    await check_stream(engine, account)


# ---- connections kept between batches --------------------------------------------------------

async def test_kept_connections_that_died_while_idle_cost_no_command(
    engine: AsyncEngine, clock: ManualClock, rate_card: RateCard, open_account: OpenAccount,
) -> None:
    """The store keeps its connections between batches; if the server drops them meanwhile (a
    restart, an idle timeout), the next batch fails on one, every kept one is let go, and the
    writer's one-by-one retry commits each command on a fresh connection: callers see no error."""
    a = await open_account(credits_ucr=10 * UCR)
    service = Ledger(engine, clock, rate_card, concurrency=2)
    await service.start()
    try:
        # Two batches at once: two connections, both kept.
        await asyncio.gather(*(service.store.run_batch([_charge(a, quantity=1)]) for _ in range(2)))
        assert len(service.store._idle) == 2
        kept = []
        for _, pg, _ in service.store._idle:
            kept.append(pg.get_server_pid())
        async with engine.connect() as other:
            for pid in kept:
                await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        before = await _version(engine, a)
        results = await service.execute_many([_charge(a, quantity=1), _charge(a, quantity=2)])
        assert all(isinstance(r, Outcome) for r in results)
        assert await _version(engine, a) == before + 2
        assert isinstance(await service.execute(_charge(a, quantity=3)), Outcome)
    finally:
        await service.stop()
    assert service.store._idle == []
    await check_stream(engine, a)


# ---- locks and load in one round trip; the next transaction opened by the commit -------------

async def _until(engine: AsyncEngine, query: str, params: dict[str, Any]) -> None:
    """Poll ``query`` (a count, read live from the server's views) until it is non-zero."""
    async with engine.connect() as conn:
        for _ in range(500):
            if await conn.scalar(text(query), params):
                return
            await conn.rollback()  # the statistics views keep one snapshot per transaction
            await asyncio.sleep(0.01)
    raise AssertionError(f"never true: {query}")


async def test_a_batch_that_waited_for_the_lock_reads_what_its_holder_committed(
    engine: AsyncEngine, clock: ManualClock, rate_card: RateCard, open_account: OpenAccount,
) -> None:
    """The lock and the load share a round trip, but not a snapshot: a batch that queued behind
    another writer's lock reads the account as that writer left it. A snapshot taken before the
    wait would still see the spent credits and charge them a second time."""
    a = await open_account(credits_ucr=10 * UCR)
    store = EventStore(engine, clock, lambda: rate_card)
    try:
        async with engine.connect() as holder:
            await holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(a)})
            batch = asyncio.create_task(store.run_batch([_charge(a, quantity=1)]))
            await _until(engine, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted", {})
            # As a writer holding the lock would: the account's credits are spent when it commits.
            await holder.execute(text("UPDATE grants SET remaining_ucr = 0 WHERE account_id = :a"), {"a": a})
            await holder.commit()
        (result,) = await batch
    finally:
        await store.close()
    assert isinstance(result, PaymentRequired) and result.remaining_ucr == 0


async def test_between_batches_the_open_transaction_holds_nothing(
    engine: AsyncEngine, clock: ManualClock, rate_card: RateCard, open_account: OpenAccount,
) -> None:
    """The COMMIT opens the next batch's transaction. Until that batch comes it has no snapshot
    (vacuum and the log's readers are not held back), no transaction id and no lock but its own."""
    a = await open_account(credits_ucr=10 * UCR)
    before = await _version(engine, a)
    store = EventStore(engine, clock, lambda: rate_card)
    try:
        (first,) = await store.run_batch([_charge(a, quantity=1)])
        assert isinstance(first, Outcome)
        pids = [pg.get_server_pid() for _, pg, _ in store._idle]
        assert pids and all(pg.is_in_transaction() for _, pg, _ in store._idle)
        async with engine.connect() as conn:
            sessions = (await conn.execute(text(
                "SELECT state, backend_xmin, backend_xid FROM pg_stat_activity WHERE pid = ANY(:p)"),
                {"p": pids})).all()
            locks = set((await conn.execute(text("SELECT locktype FROM pg_locks WHERE pid = ANY(:p)"),
                                            {"p": pids})).scalars())
        assert [tuple(s) for s in sessions] == [("idle in transaction", None, None)] * len(pids)
        assert locks == {"virtualxid"}
        (second,) = await store.run_batch([_charge(a, quantity=1)])  # on the transaction left open
        assert isinstance(second, Outcome)
    finally:
        await store.close()
    assert await _version(engine, a) == before + 2
    await check_stream(engine, a)


async def test_a_quiet_store_ends_the_open_transactions(
    engine: AsyncEngine, clock: ManualClock, rate_card: RateCard, open_account: OpenAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After ``IDLE_TRANSACTION_S`` without a batch the kept connections are plain idle sessions
    again (nothing in pg_stat_activity looks leaked), and the next batch opens its own."""
    monkeypatch.setattr(store_connections, "IDLE_TRANSACTION_S", 0.05)
    a = await open_account(credits_ucr=10 * UCR)
    before = await _version(engine, a)
    store = EventStore(engine, clock, lambda: rate_card)
    try:
        await store.run_batch([_charge(a, quantity=1)])
        pids = [pg.get_server_pid() for _, pg, _ in store._idle]
        await _until(engine, "SELECT count(*) = :n FROM pg_stat_activity WHERE pid = ANY(:p) AND state = 'idle'",
                     {"p": pids, "n": len(pids)})
        assert [pg.get_server_pid() for _, pg, _ in store._idle] == pids  # kept, not closed
        assert not any(pg.is_in_transaction() for _, pg, _ in store._idle)
        (again,) = await store.run_batch([_charge(a, quantity=1)])
        assert isinstance(again, Outcome)
    finally:
        await store.close()
    assert await _version(engine, a) == before + 2


async def test_closing_the_store_leaves_no_transaction_on_pooled_connections(
    engine: AsyncEngine, clock: ManualClock, rate_card: RateCard, open_account: OpenAccount,
) -> None:
    """SQLAlchemy's pool rolls back only what it began: the store ends its own open transaction
    before handing a connection back, so the pool's next user can begin one."""
    a = await open_account(credits_ucr=10 * UCR)
    store = EventStore(engine, clock, lambda: rate_card, keep_connections=1)
    # Two batches at once: one connection is kept, the other goes back to the pool at once.
    await asyncio.gather(*(store.run_batch([_charge(a, quantity=1)]) for _ in range(2)))
    await store.close()
    idle: int = engine.pool.checkedin()  # type: ignore[attr-defined]
    conns = [await engine.connect() for _ in range(idle)]  # every connection the pool holds
    try:
        for conn in conns:
            async with conn.begin():
                assert await conn.scalar(text("SELECT count(*) FROM accounts WHERE account_id = :a"), {"a": a}) == 1
    finally:
        for conn in conns:
            await conn.close()


@pytest.mark.parametrize("inline_max", [store_connections.INLINE_MAX, 0], ids=["write-with-commit", "large-write"])
async def test_a_failure_after_the_commit_is_not_a_failed_batch(
    engine: AsyncEngine, clock: ManualClock, rate_card: RateCard, open_account: OpenAccount,
    monkeypatch: pytest.MonkeyPatch, inline_max: int,
) -> None:
    """The round trip that commits also opens the next transaction. If only that last part fails,
    the batch did commit: its results stand, and nothing is retried (a retry would charge twice).
    With the write in the same message, the store finds the batch's first event in the log; a
    large write goes in its own round trip, and then a transaction still open after the error
    says the COMMIT succeeded (a COMMIT that fails ends its transaction)."""
    monkeypatch.setattr(store_connections, "INLINE_MAX", inline_max)
    monkeypatch.setattr(store_connections, "COMMIT_AND_BEGIN", "COMMIT; BEGIN; SELECT 1 / 0")
    a = await open_account(credits_ucr=10 * UCR)
    before = await _version(engine, a)
    store = EventStore(engine, clock, lambda: rate_card)
    try:
        (result,) = await store.run_batch([_charge(a, quantity=1)])
        assert isinstance(result, Outcome)
        assert not any(pg.is_in_transaction() for _, pg, _ in store._idle)
    finally:
        await store.close()
    assert await _version(engine, a) == before + 1
    stored = await check_stream(engine, a)
    assert stored[-1].event_id == str(result.events[-1].event_id)


# ---- the write and the COMMIT in one round trip ----------------------------------------------

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(st.text(alphabet=st.characters(codec="utf-8", blacklist_characters="\x00")),
                       st.text(alphabet="\\'\"$E;-\n a"),  # dense in what quoting must get right
                       st.datetimes(timezones=st.just(UTC)), st.datetimes(),
                       st.integers(min_value=-(2**63), max_value=2**63 - 1), st.none()))
@example(value="it's \\ a \\' quote\\\\ and 'backslashes'\\")
@example(value=datetime(2026, 12, 3, 12, 0, 0, 123456))
async def test_a_literal_reads_back_exactly(engine: AsyncEngine, value: str | datetime | int | None) -> None:
    """The write's parameters travel as literals in the text of an ``EXECUTE``: every text (quotes,
    backslashes, anything but NUL, which PostgreSQL's text cannot hold) reads back exactly, with
    ``standard_conforming_strings`` on or off; a naive time is UTC, as asyncpg takes it. (Surrogates
    are not text: orjson refuses them before any literal is made.)"""
    # A connection of its own, not the pool's: a failing example must not hand a broken one on.
    pg = await asyncpg.connect(engine.url.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await pg.execute("BEGIN")  # the settings below last until the transaction ends
        for conforming in ("on", "off"):
            await pg.execute(f"SET LOCAL standard_conforming_strings = {conforming}")
            assert await pg.fetchval("SHOW standard_conforming_strings") == conforming
            if isinstance(value, datetime):
                back = await pg.fetchval(f"SELECT CAST({literal(value)} AS timestamptz)")
                assert back == (value if value.tzinfo is not None else value.replace(tzinfo=UTC))
            elif isinstance(value, int):
                assert await pg.fetchval(f"SELECT CAST({literal(value)} AS bigint)") == value
            else:
                assert await pg.fetchval(f"SELECT CAST({literal(value)} AS text)") == value
    finally:
        await pg.close()


def test_a_literal_refuses_what_text_cannot_hold() -> None:
    with pytest.raises(ValueError, match="NUL"):
        literal("a\x00'; DROP TABLE events; --")


async def test_a_commit_the_server_refuses_is_known_not_to_have_landed(
    engine: AsyncEngine, single: Ledger, open_account: OpenAccount,
) -> None:
    """A COMMIT can fail on its own (here a deferred constraint trigger refuses one agent's spend at
    commit time). The batch's first event is then not in the log, which the store reads before
    answering: its commands are retried one by one, so only the refused one fails and its
    neighbours commit. Without that read every caller of the batch would get ``OutcomeUnknown``."""
    a = await open_account(credits_ucr=10 * UCR)
    b = await open_account(credits_ucr=10 * UCR)
    va, vb = await _version(engine, a), await _version(engine, b)
    async with engine.begin() as conn:
        await conn.execute(text(
            "CREATE FUNCTION test_refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$"))
        await conn.execute(text(
            "CREATE CONSTRAINT TRIGGER test_refuse_at_commit AFTER INSERT ON spend_counters"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.scope = 'agent' AND NEW.subject = 'refused')"
            " EXECUTE FUNCTION test_refuse_at_commit()"))
    try:
        refused = _charge(a, attribution=Attribution(agent="refused"))
        commands = [_charge(a), _charge(b), refused, _charge(b)]
        committed_before = len(single.writer.batch_sizes)
        results = await asyncio.gather(*(single.writer.submit_nowait(cmd) for cmd in commands))
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DROP TRIGGER test_refuse_at_commit ON spend_counters"))
            await conn.execute(text("DROP FUNCTION test_refuse_at_commit()"))
    assert single.writer.batch_sizes[committed_before:] == [1, 1, 1]
    assert isinstance(results[2], CommandFailed)
    assert all(isinstance(results[i], Outcome) for i in (0, 1, 3)), results
    assert (await _version(engine, a), await _version(engine, b)) == (va + 1, vb + 2)
    for account in (a, b):
        await check_stream(engine, account)


async def test_a_batch_without_events_commits_in_its_own_round_trip_and_is_told_apart_the_same(
    engine: AsyncEngine, clock: ManualClock, rate_card: RateCard, open_account: OpenAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A keyed command that appends nothing (no grant due to expire) still stores its key, with no
    event to look for afterwards: its write and its COMMIT go in separate round trips. A failure
    after that COMMIT leaves the next transaction open, while a failed COMMIT leaves none: the
    batch committed, its result stands and the key is kept."""
    monkeypatch.setattr(store_connections, "COMMIT_AND_BEGIN", "COMMIT; BEGIN; SELECT 1 / 0")
    a = await open_account(credits_ucr=10 * UCR)
    before = await _version(engine, a)
    store = EventStore(engine, clock, lambda: rate_card)
    try:
        (result,) = await store.run_batch([c.ExpireGrants(account_id=a, idempotency_key="nothing-due")])
        assert isinstance(result, Outcome) and result.events == ()
        assert not any(pg.is_in_transaction() for _, pg, _ in store._idle)
    finally:
        await store.close()
    assert await _version(engine, a) == before
    async with engine.connect() as conn:
        kept = await conn.scalar(text("SELECT count(*) FROM idempotency_keys WHERE account_id = :a AND key = :k"),
                                 {"a": a, "k": "nothing-due"})
    assert kept == 1


# ---- purchases and refunds over the service --------------------------------------------------------


async def test_a_refund_names_the_purchase_by_its_ledger_entry_id(ledger: Ledger, clock: ManualClock,
                                                                   open_account: Any) -> None:
    account = await open_account()
    pack = max(ledger.card.packs.values(), key=lambda p: p.credits)
    bought = await ledger.execute(c.RecordPurchase(account_id=account, kind="pack", pack_id=pack.id,
                                                   cents_paid=pack.price_cents))
    purchase = bought.events[0]
    assert isinstance(purchase, CreditsPurchased)
    # The id the ledger shows for the purchase's entry is what a refund names.
    [(_, shown)] = await ledger.ledger_page(account, limit=1)
    assert shown.event_id == purchase.event_id != purchase.grant_id
    version = (await ledger.balance(account, recent=0)).version

    with pytest.raises(NotFound):  # the grant id is not a ledger entry
        await ledger.execute(c.IssueRefund(account_id=account, direction="clawback", purchase_id=purchase.grant_id,
                                           reason="refunded in Stripe", idempotency_key="re-grant"))
    await ledger.execute(c.Meter(account_id=account, operation="email", quantity=2000))  # 2 credits used
    clock.advance(timedelta(days=ledger.card.refund_window_days, seconds=1))
    with pytest.raises(RefundRejected) as late:
        await ledger.execute(c.IssueRefund(account_id=account, direction="clawback", purchase_id=purchase.event_id,
                                           reason="refunded in Stripe", idempotency_key="re-late"))
    assert late.value.reason == "refund_window_closed"
    assert (await ledger.balance(account, recent=0)).version == version + 1  # only the meter was recorded

    forced = await ledger.execute(c.IssueRefund(
        account_id=account, direction="clawback", purchase_id=purchase.event_id, reason="support: forced",
        force=True, idempotency_key="re-late"))  # a refused command kept no key: the key is free
    [refund] = forced.events
    assert isinstance(refund, RefundIssued)
    left = purchase.amount_ucr - 2 * UCR
    assert (refund.purchase_id, refund.amount_ucr, refund.requested_ucr, refund.capped, refund.forced) == (
        purchase.event_id, -left, purchase.amount_ucr, True, True)
    assert (await ledger.balance(account, recent=0)).by_source["purchase"] == 0


async def test_a_purchase_not_paid_in_full_records_nothing(ledger: Ledger, open_account: Any) -> None:
    account = await open_account()
    pack = max(ledger.card.packs.values(), key=lambda p: p.credits)
    version = (await ledger.balance(account, recent=0)).version
    with pytest.raises(PurchaseRejected) as underpaid:
        await ledger.execute(c.RecordPurchase(account_id=account, kind="pack", pack_id=pack.id, cents_paid=10,
                                              idempotency_key="stripe:evt_underpaid"))
    assert underpaid.value.reason == "price_mismatch"
    rule = ledger.card.custom_amount
    with pytest.raises(PurchaseRejected):
        await ledger.execute(c.RecordPurchase(account_id=account, kind="custom", cents_paid=rule.min_cents - 1))
    after = await ledger.balance(account, recent=0)
    assert (after.version, after.balance_ucr) == (version, 0)
    async with ledger.engine.connect() as conn:
        kept = (await conn.execute(text("SELECT count(*) FROM idempotency_keys WHERE account_id = :a"),
                                   {"a": account})).scalar()
    assert kept == 0


async def test_the_spend_bound_holds_on_every_counter_the_store_keeps(ledger: Ledger, clock: ManualClock,
                                                                        open_account: Any) -> None:
    """The store loads every counter a debit adds to, with no budget or limit set: the month's of
    a plain meter, and the past month's of an hour charge caught up after midnight."""
    account = await open_account(credits_ucr=1_000_000)
    clock.set(datetime(2026, 11, 30, 22, 30, tzinfo=UTC))
    hourly = 800_000  # gpu-s
    await ledger.execute(c.StartDeployment(account_id=account, deployment_id="d", instance_type="gpu-s"))
    # November's counter is filled (1,000 µcr an email) to less than an hour's price below the bound.
    async with ledger.engine.connect() as conn:
        spent = (await conn.execute(text(
            "SELECT spent_ucr FROM spend_counters WHERE account_id = :a AND scope = 'account' AND period = :p"),
            {"a": account, "p": "M2026-11"})).scalar_one()
    messages = (MAX_SPEND_UCR - spent - hourly) // 1000 + 1
    for q in (10**15, 10**15, messages - 2 * 10**15):
        await ledger.execute(c.Meter(account_id=account, operation="email", quantity=q))
    await ledger.execute(c.GrantCredits(account_id=account, amount_ucr=MAX_UCR, source="purchase", reason="t"))
    version = (await ledger.balance(account, recent=0)).version
    with pytest.raises(OutOfRange):
        await ledger.execute(c.Meter(account_id=account, operation="email", quantity=1000))
    # Hour 1 fell due at 23:30 on 30 November; the scheduler catches it up at 00:10 on 1 December.
    clock.set(datetime(2026, 12, 1, 0, 10, tzinfo=UTC))
    with pytest.raises(OutOfRange):
        await ledger.execute(c.ChargeDeploymentHour(account_id=account, deployment_id="d", hour_index=1,
                                                    idempotency_key="deployment:d:hour:1"))
    assert (await ledger.balance(account, recent=0)).version == version  # nothing recorded
    # December's counters have room.
    await ledger.execute(c.Meter(account_id=account, operation="email", quantity=1000))
    async with ledger.engine.connect() as conn:
        largest = (await conn.execute(text("SELECT max(spent_ucr) FROM spend_counters WHERE account_id = :a"),
                                      {"a": account})).scalar_one()
    assert MAX_SPEND_UCR - hourly < largest <= MAX_SPEND_UCR


async def test_a_batch_decided_again_with_the_counters_it_asked_for(fresh_database_url: str) -> None:
    """An account near the spend bound makes its debit ask for counters the load skipped: the
    store loads them and decides the whole batch again from what it loaded, so the other
    accounts' commands (a coupon taking the last redemption) are decided once, as if in order."""
    engine = make_engine(fresh_database_url)
    service = Ledger(engine, ManualClock(T0), await ensure_rate_card(engine), concurrency=1)
    await service.start()
    try:
        for a in ("near", "plain"):
            await service.execute(c.OpenAccount(account_id=a, name=a, plan="free"))
        for _ in range(2):  # 2 x 10^18 µcr spent: the bound is 2^61 ~ 2.3 x 10^18
            await service.execute(c.Meter(account_id="near", operation="email", quantity=10**15))
        room = MAX_SPEND_UCR - 2 * 10**18
        async with engine.begin() as conn:  # LAUNCH50 has one redemption left
            await conn.execute(text("INSERT INTO coupons (code, max_redemptions, redeemed_count)"
                                    " VALUES ('LAUNCH50', 500, 499) ON CONFLICT (code) DO UPDATE"
                                    " SET redeemed_count = 499"))
        results = await one_batch(service, [
            c.Meter(account_id="plain", operation="email", quantity=1),
            c.RedeemCoupon(account_id="plain", code="LAUNCH50"),
            c.Meter(account_id="near", operation="email", quantity=room // 1000 + 1),
            c.Meter(account_id="near", operation="email", quantity=room // 1000),
            c.Meter(account_id="plain", operation="email", quantity=2),
        ])
        assert [type(r).__name__ for r in results] == ["Outcome", "Outcome", "OutOfRange", "Outcome", "Outcome"]
        assert isinstance(results[1], Outcome) and type(results[1].events[0]) is CouponApplied
        async with engine.connect() as conn:
            spent: dict[str, int] = dict((await conn.execute(text("SELECT account_id, spent_ucr FROM accounts"))).all())
            month: dict[str, int] = dict((await conn.execute(text(
                "SELECT account_id, spent_ucr FROM spend_counters WHERE scope = 'account' AND period = 'M2026-11'"),
            )).all())
            redeemed = await conn.scalar(text("SELECT redeemed_count FROM coupons WHERE code = 'LAUNCH50'"))
        assert month["near"] == spent["near"] == 2 * 10**18 + room // 1000 * 1000 <= MAX_SPEND_UCR
        assert month["plain"] == spent["plain"] == 3_000
        assert redeemed == 500
        assert (await verify(engine)).clean
    finally:
        await service.stop()
        await engine.dispose()
