"""Burn order: ``plan_draws`` over random grant sets.

The expected order is written here from DESIGN.md ("soonest-expiring first, then promotion,
allowance, refund, purchase"), not taken from ``ledger.grants.burn_key``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger.events import Draw, GrantSource
from ledger.grants import Grant, plan_draws

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
SOURCES: tuple[GrantSource, ...] = ("allowance", "purchase", "promotion", "refund")
#: DESIGN.md: among grants that expire together (or never): promotion, allowance, refund, purchase.
DESIGN_RANK = {"promotion": 0, "allowance": 1, "refund": 2, "purchase": 3}


@st.composite
def grant_sets(draw: st.DrawFn, *, expiring_only: bool = False, same_age: bool = False) -> list[Grant]:
    n = draw(st.integers(0, 8))
    grants = []
    for i in range(n):
        original = draw(st.integers(1, 1_000))
        remaining = draw(st.integers(0, original))
        # Few distinct expiries and ages, so ties (the interesting part) are common.
        expiry = draw(st.integers(0, 4) if expiring_only else st.none() | st.integers(0, 4))
        age = 0 if same_age else draw(st.integers(0, 3))
        grants.append(Grant(
            grant_id=UUID(int=draw(st.integers(0, 2**32)) * 16 + i),  # unique, random order
            source=draw(st.sampled_from(SOURCES)),
            original_ucr=original,
            remaining_ucr=remaining,
            expires_at=None if expiry is None else T0 + timedelta(days=expiry),
            granted_at=T0 - timedelta(days=age),
        ))
    return grants


def design_order(grants: list[Grant]) -> list[Grant]:
    """Live grants in the order DESIGN.md burns them: expiry first, then source; ties by age."""
    live = [g for g in grants if g.remaining_ucr > 0]
    return sorted(live, key=lambda g: (
        g.expires_at is None,
        g.expires_at or datetime.max.replace(tzinfo=UTC),
        DESIGN_RANK[g.source],
        g.granted_at,
        str(g.grant_id),
    ))


def check_amounts(grants: list[Grant], amount: int, draws: tuple[Draw, ...], unpaid: int) -> None:
    by_id = {g.grant_id: g for g in grants}
    ids = [d.grant_id for d in draws]
    assert len(ids) == len(set(ids)), "a grant is drawn from twice"
    for d in draws:
        g = by_id[d.grant_id]
        assert type(d.amount_ucr) is int
        assert 0 < d.amount_ucr <= g.remaining_ucr, "a draw exceeds what the grant has left"
        assert d.source == g.source
    total = sum(g.remaining_ucr for g in grants)
    assert sum(d.amount_ucr for d in draws) + unpaid == amount
    assert unpaid == max(0, amount - total)


def check_prefix(order: list[Grant], draws: tuple[Draw, ...]) -> None:
    """Draws take a prefix of ``order``; every grant but the last drawn is emptied."""
    assert [d.grant_id for d in draws] == [g.grant_id for g in order[: len(draws)]]
    for d, g in zip(draws[:-1], order, strict=False):
        assert d.amount_ucr == g.remaining_ucr, "a later grant was touched before an earlier one was exhausted"


@settings(max_examples=400)
@given(grants=grant_sets(), data=st.data())
def test_draws_never_exceed_remaining_and_add_up(grants: list[Grant], data: st.DataObject) -> None:
    total = sum(g.remaining_ucr for g in grants)
    amount = data.draw(st.integers(0, total + 500))
    draws, unpaid = plan_draws(grants, amount)
    check_amounts(grants, amount, draws, unpaid)


@settings(max_examples=400)
@given(grants=grant_sets(expiring_only=True), data=st.data())
def test_expiring_grants_burn_soonest_first_then_by_source(grants: list[Grant], data: st.DataObject) -> None:
    amount = data.draw(st.integers(0, sum(g.remaining_ucr for g in grants) + 500))
    draws, unpaid = plan_draws(grants, amount)
    check_amounts(grants, amount, draws, unpaid)
    check_prefix(design_order(grants), draws)


@settings(max_examples=400)
@given(grants=grant_sets(same_age=True), data=st.data())
def test_burn_order_when_grants_are_the_same_age(grants: list[Grant], data: st.DataObject) -> None:
    amount = data.draw(st.integers(0, sum(g.remaining_ucr for g in grants) + 500))
    draws, unpaid = plan_draws(grants, amount)
    check_amounts(grants, amount, draws, unpaid)
    check_prefix(design_order(grants), draws)


@settings(max_examples=400)
@given(grants=grant_sets(), data=st.data())
def test_expiring_grants_are_spent_before_any_that_never_expire(grants: list[Grant], data: st.DataObject) -> None:
    amount = data.draw(st.integers(0, sum(g.remaining_ucr for g in grants) + 500))
    draws, _ = plan_draws(grants, amount)
    by_id = {g.grant_id: g for g in grants}
    kinds = [by_id[d.grant_id].expires_at is None for d in draws]
    assert kinds == sorted(kinds), "a never-expiring grant was drawn before an expiring one"
    expiring = design_order([g for g in grants if g.expires_at is not None])
    check_prefix(expiring, tuple(d for d in draws if by_id[d.grant_id].expires_at is not None))


_PURCHASE_FIRST = [
    Grant(UUID(int=1), "purchase", 100, 100, None, T0 - timedelta(days=2)),
    Grant(UUID(int=2), "refund", 100, 100, None, T0 - timedelta(days=1)),
    Grant(UUID(int=3), "promotion", 100, 100, None, T0),
]



@settings(max_examples=400)
@given(grants=grant_sets(), data=st.data())
@example(grants=_PURCHASE_FIRST, data=None)
def test_draws_follow_the_design_burn_order(grants: list[Grant], data: st.DataObject | None) -> None:
    total = sum(g.remaining_ucr for g in grants)
    amount = 150 if data is None else data.draw(st.integers(0, total + 500))
    draws, unpaid = plan_draws(grants, amount)
    check_amounts(grants, amount, draws, unpaid)
    check_prefix(design_order(grants), draws)


def test_never_expiring_promotion_and_refund_burn_before_an_older_purchase() -> None:
    draws, unpaid = plan_draws(_PURCHASE_FIRST, 150)
    assert unpaid == 0
    assert [(d.source, d.amount_ucr) for d in draws] == [("promotion", 100), ("refund", 50)]


def test_worked_example_across_every_source() -> None:
    soon = T0 + timedelta(days=5)
    later = T0 + timedelta(days=20)
    grants = [
        Grant(UUID(int=10), "purchase", 1_000, 1_000, None, T0),
        Grant(UUID(int=11), "refund", 300, 300, None, T0),
        Grant(UUID(int=12), "allowance", 500, 400, later, T0),
        Grant(UUID(int=13), "promotion", 200, 200, later, T0),
        Grant(UUID(int=14), "allowance", 50, 50, soon, T0),
        Grant(UUID(int=15), "promotion", 10, 0, soon, T0),  # empty: never drawn
        Grant(UUID(int=16), "promotion", 70, 70, None, T0),
    ]
    draws, unpaid = plan_draws(grants, 1_000)
    # soonest expiry (allowance 50), then day-20 promotion before day-20 allowance, then the
    # never-expiring ones: promotion, refund, and finally purchase for what is left.
    assert [(d.grant_id.int, d.amount_ucr) for d in draws] == [(14, 50), (13, 200), (12, 400), (16, 70),
                                                               (11, 280)]
    assert unpaid == 0
    draws, unpaid = plan_draws(grants, 3_000)
    assert sum(d.amount_ucr for d in draws) == 2_020
    assert unpaid == 980
    assert plan_draws(grants, 0) == ((), 0)
    assert plan_draws([], 5) == ((), 5)
