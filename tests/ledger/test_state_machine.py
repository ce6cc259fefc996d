"""Every command, through the real store on PostgreSQL, against a small model written here.

The model is plain arithmetic over a dict of grants, a debt, reservations, deployments, a budget,
limits and spend counters, written from DESIGN.md (it never calls ``ledger.decide``). A
hypothesis state machine drives one account of the ``Ledger`` service (group-commit writer and
all) with a manual clock, and after every step compares the service with the model:

- the balance, debt, reserved and status the service reads equal the model's;
- ``balance_ucr == sum(grants remaining) - debt`` in the stored inline state;
- every grant's remaining amount and every deployment's hours equal the model's;
- a gated command that succeeded never left ``available < 0``;
- a refused command appended nothing (the account's version is unchanged);
- every event's ``balance_after_ucr`` is the previous one plus its ``amount_ucr``.
"""

from __future__ import annotations

import asyncio
import copy
import secrets
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, ClassVar, TypeVar
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.db import make_engine
from ledger.errors import (
    CouponRejected,
    IdempotencyConflict,
    InvalidRequest,
    InvalidState,
    LedgerError,
    NotFound,
    PaymentRequired,
    PurchaseRejected,
    RefundRejected,
    UnknownPack,
    UnknownPlan,
)
from ledger.events import Attribution, Draw, Event
from ledger.money import MAX_UCR
from ledger.rates import parse_rate_card
from ledger.service import Ledger
from ledger.store import Outcome
from tests.cards import frozen_rate_card_text
from tests.conftest import create_database, drop_database, with_database

T = TypeVar("T")
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)  # day 1 of a month: adding months is exact
C = 1_000_000
FAR = datetime.max.replace(tzinfo=UTC)
#: DESIGN.md: after expiry, promotion, allowance, refund, purchase.
RANK = {"promotion": 0, "allowance": 1, "refund": 2, "purchase": 3}

#: The test suite's frozen card plus a coupon with a tiny global stock (so "used up" happens across examples).
CARD = parse_rate_card(
    frozen_rate_card_text() + '\n[coupons.TINY]\ncredits = "3"\nmax_redemptions = 3\ngrant_expires_days = 1\n'
)


def ucr(credits: Decimal) -> int:
    exact = Fraction(str(credits)) * C
    assert exact.denominator == 1
    return int(exact)


def cost_of(op: str, quantity: int | None, quantities: dict[str, int] | None) -> int:
    """The price from the card's numbers: summed exactly, rounded up once, at least the minimum."""
    o = CARD.operations[op]
    qs = {o.unit: quantity} if quantity is not None else dict(quantities or {})
    exact = sum((Fraction(str(o.rates[d].credits)) * C * q / o.rates[d].per for d, q in qs.items()), Fraction(0))
    return max(-(-exact.numerator // exact.denominator), ucr(o.minimum))


def add_months(t: datetime, n: int) -> datetime:
    years, month0 = divmod(t.month - 1 + n, 12)
    return t.replace(year=t.year + years, month=month0 + 1)


def month_key(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m")


def day_key(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d")


# ---- the model -----------------------------------------------------------------------------------


@dataclass
class MGrant:
    source: str
    original: int
    remaining: int
    expires_at: datetime | None
    granted_at: datetime
    uid: UUID | None = None  # the ledger's grant id, bound once recorded
    entry: UUID | None = None  # the id of the ledger entry that added it, bound once recorded
    bought: bool = False  # added by a purchase (a refund or a dispute may name its entry)
    dispute: str | None = None  # the purchase's dispute id, once disputed
    dispute_status: str = ""  # open | won | lost
    frozen: int = 0


@dataclass
class MReservation:
    operation: str
    held: int
    status: str
    expires_at: datetime
    uid: UUID | None = None


@dataclass
class MDeployment:
    instance: str
    hourly: int
    status: str
    hours: int
    #: Running time used before ``segment_start`` (all of it while not running): pauses stop the clock.
    used: timedelta
    segment_start: datetime

    def used_at(self, now: datetime) -> timedelta:
        return self.used + (now - self.segment_start if self.status == "running" else timedelta(0))


@dataclass(frozen=True)
class OneOf:
    """An expected field value that may be any of several (e.g. which failed check is reported)."""

    values: frozenset[Any]


@dataclass
class Exp:
    """One expected event."""

    type: str
    amount: int
    balance_after: int
    fields: dict[str, Any] = field(default_factory=dict)
    new_grant: int | None = None
    new_reservation: int | None = None
    grant: int | None = None  # the existing grant it names (GrantExpired, clawback)
    draws: list[tuple[int, int]] | None = None


class Refused(Exception):
    def __init__(self, error: type[LedgerError], *, reason: str | None = None, cost: int | None = None,
                 options: list[tuple[str, int]] | None = None) -> None:
        super().__init__(f"{error.__name__} {reason or ''} {options or ''}")
        self.error = error
        self.reason = reason
        self.cost = cost
        self.options = options or []

    def check(self, err: LedgerError) -> None:
        assert type(err) is self.error, f"refused with {err!r}, the model expected {self}"
        if isinstance(err, CouponRejected):
            assert err.reason == self.reason
        if isinstance(err, PaymentRequired):
            assert err.required_ucr == self.cost
            assert (err.reason, err.remaining_ucr) in self.options, (err.reason, err.remaining_ucr, self.options)
            assert err.upgrade_url == CARD.upgrade_url


@dataclass
class Model:
    now: datetime
    stock: dict[str, int | None]
    plan: str = ""
    opened_at: datetime = T0
    grants: dict[int, MGrant] = field(default_factory=dict)
    debt: int = 0
    reserved: int = 0
    reservations: dict[int, MReservation] = field(default_factory=dict)
    deployments: dict[str, MDeployment] = field(default_factory=dict)
    budget_limit: int | None = None
    hard_stop: bool = False
    limits: dict[tuple[str, str], tuple[int | None, int | None, int | None]] = field(default_factory=dict)
    counters: dict[tuple[str, str, str], int] = field(default_factory=dict)
    redeemed: set[str] = field(default_factory=set)
    allowance_cycle: int = -1
    version: int = 0
    next_key: int = 0
    out: list[Exp] = field(default_factory=list)

    @property
    def balance(self) -> int:
        return sum(g.remaining for g in self.grants.values()) - self.debt

    @property
    def available(self) -> int:
        return self.balance - self.reserved

    # -- building blocks --

    def emit(self, type_: str, amount: int = 0, **kw: Any) -> Exp:
        """Record an expected event; call it after the model changed, so balance_after is known."""
        e = Exp(type_, amount, self.balance, **kw)
        self.out.append(e)
        return e

    def key(self) -> int:
        self.next_key += 1
        return self.next_key

    def expire_due(self) -> None:
        for k, g in self.grants.items():
            if g.expires_at is not None and g.expires_at <= self.now and g.remaining > 0:
                left, g.remaining = g.remaining, 0
                self.emit("GrantExpired", -left, grant=k, fields={"expired_ucr": left, "source": g.source})

    def add_grant(self, type_: str, source: str, amount: int, expires_at: datetime | None,
                  fields: dict[str, Any]) -> int:
        k = self.key()
        self.grants[k] = MGrant(source, amount, amount, expires_at, self.now)
        self.emit(type_, amount, new_grant=k, fields=fields)
        self.settle_debt(k)
        return k

    def settle_debt(self, k: int) -> None:
        settled = min(self.debt, self.grants[k].remaining)
        if settled > 0:
            self.grants[k].remaining -= settled
            self.debt -= settled
            self.emit("DebtSettled", 0, draws=[(k, settled)], fields={"settled_ucr": settled})

    def gate(self, cost: int, attribution: Attribution = Attribution()) -> list[tuple[str, int]]:
        """Every check the spend fails, as (reason, remaining); empty when it may be spent."""
        fails = []
        if cost > self.available:
            fails.append(("insufficient_balance", max(self.available, 0)))
        if self.hard_stop and self.budget_limit is not None:
            # What reservations hold counts as spent: settling them is never refused.
            spent = self.counters.get(("account", "", "M" + month_key(self.now)), 0) + self.reserved
            if spent + cost > self.budget_limit:
                fails.append(("budget_hard_limit", max(self.budget_limit - spent, 0)))
        for scope, subject in (("agent", attribution.agent), ("member", attribution.member)):
            if not subject or (scope, subject) not in self.limits:
                continue
            per_run, per_day, per_month = self.limits[(scope, subject)]
            checks = [(per_day, "D" + day_key(self.now)), (per_month, "M" + month_key(self.now))]
            if attribution.run:
                checks.append((per_run, "R" + attribution.run))
            for cap, period in checks:
                spent = self.counters.get((scope, subject, period), 0)
                if cap is not None and spent + cost > cap:
                    fails.append((f"{scope}_limit", max(cap - spent, 0)))
        return fails

    def require(self, cost: int, attribution: Attribution = Attribution()) -> None:
        fails = self.gate(cost, attribution)
        if fails:
            raise Refused(PaymentRequired, cost=cost, options=fails)

    def burn_order(self) -> list[int]:
        live = [k for k, g in self.grants.items() if g.remaining > 0]
        return sorted(live, key=lambda k: (
            self.grants[k].expires_at is None, self.grants[k].expires_at or FAR, RANK[self.grants[k].source],
            self.grants[k].granted_at, str(self.grants[k].uid)))

    def debit(self, cost: int, attribution: Attribution, *, gated: bool, occurred: datetime | None = None,
              **fields: Any) -> None:
        left, draws = cost, []
        for k in self.burn_order():
            if left == 0:
                break
            take = min(left, self.grants[k].remaining)
            self.grants[k].remaining -= take
            draws.append((k, take))
            left -= take
        self.debt += left
        when = occurred or self.now
        keys = [("account", "", "M" + month_key(when)), ("account", "", "D" + day_key(when))]
        for scope, subject in (("agent", attribution.agent), ("member", attribution.member)):
            if subject:
                keys += [(scope, subject, "M" + month_key(when)), (scope, subject, "D" + day_key(when))]
                if attribution.run:
                    keys.append((scope, subject, "R" + attribution.run))
        for ck in keys:
            self.counters[ck] = self.counters.get(ck, 0) + cost
        self.emit("UsageMetered", -cost, draws=draws,
                  fields={"cost_ucr": cost, "gated": gated, "debt_added_ucr": left, **fields})

    # -- the commands, from DESIGN.md --

    def open(self, plan: str) -> None:
        p = CARD.plans[plan]
        self.plan, self.opened_at = plan, self.now
        self.emit("AccountOpened", fields={"plan": plan})
        if p.signup_credits:
            days = p.signup_credits_expire_days
            self.add_grant("CreditsGranted", "promotion", ucr(p.signup_credits),
                           self.now + timedelta(days=days) if days else None, {"source": "promotion"})
        self.allowance(0)

    def allowance(self, cycle: int) -> None:
        if cycle <= self.allowance_cycle:
            raise Refused(InvalidState)
        if not add_months(self.opened_at, cycle) <= self.now < add_months(self.opened_at, cycle + 1):
            raise Refused(InvalidState)
        self.expire_due()
        amount = ucr(CARD.plans[self.plan].monthly_credits)
        if amount:
            self.allowance_cycle = cycle
            self.add_grant("AllowanceGranted", "allowance", amount, add_months(self.opened_at, cycle + 1),
                           {"cycle": cycle})

    def grant(self, amount: int, source: str, expires_at: datetime | None) -> None:
        if expires_at is not None and expires_at <= self.now:
            raise Refused(InvalidRequest)
        self.expire_due()
        self.add_grant("CreditsGranted", source, amount, expires_at, {"source": source, "expires_at": expires_at})

    def coupon(self, typed: str) -> None:
        coupon = CARD.coupon(typed)  # codes ignore case
        if coupon is None:
            raise Refused(CouponRejected, reason="unknown")
        code = coupon.code
        if coupon.expires_at is not None and coupon.expires_at <= self.now:
            raise Refused(CouponRejected, reason="expired")
        if code in self.redeemed:
            raise Refused(CouponRejected, reason="already_redeemed")
        stock = self.stock[code]
        if stock is not None and stock <= 0:
            raise Refused(CouponRejected, reason="used_up")
        self.expire_due()
        self.redeemed.add(code)
        self.stock[code] = None if stock is None else stock - 1
        days = coupon.grant_expires_days
        expires = self.now + timedelta(days=days) if days else None
        self.add_grant("CouponApplied", "promotion", ucr(coupon.credits), expires,
                       {"code": code, "expires_at": expires})

    def usage(self, op: str, quantity: int | None, quantities: dict[str, int] | None, attribution: Attribution,
              *, gated: bool) -> None:
        cost = cost_of(op, quantity, quantities)
        self.expire_due()
        if gated:
            self.require(cost, attribution)
        self.debit(cost, attribution, gated=gated, operation=op)

    def reserve(self, op: str, quantity: int | None, amount: int | None, ttl: int) -> None:
        held = amount if amount is not None else cost_of(op, quantity, None)
        self.expire_due()
        self.require(held)
        k = self.key()
        self.reservations[k] = MReservation(op, held, "held", self.now + timedelta(seconds=ttl))
        self.reserved += held
        self.emit("CreditsReserved", new_reservation=k, fields={"held_ucr": held})

    def _held(self, k: int | None) -> MReservation:
        if k is None:
            raise Refused(NotFound)
        r = self.reservations[k]
        if r.status != "held":
            raise Refused(InvalidState)
        return r

    def settle(self, k: int | None, quantity: int) -> None:
        r = self._held(k)
        cost = cost_of(r.operation, quantity, None)
        self.expire_due()
        r.status = "settled"
        self.reserved -= r.held
        self.emit("CreditsReleased", fields={"released_ucr": max(r.held - cost, 0), "reason": "settled"})
        self.debit(cost, Attribution(), gated=False, reservation_id=r.uid)

    def release(self, k: int | None) -> None:
        r = self._held(k)
        r.status = "released"
        self.reserved -= r.held
        self.emit("CreditsReleased", fields={"released_ucr": r.held, "reason": "released"})

    def expire_reservations(self) -> None:
        due = [r for r in self.reservations.values() if r.status == "held" and r.expires_at <= self.now]
        for r in sorted(due, key=lambda r: (r.expires_at, str(r.uid))):
            r.status = "expired"
            self.reserved -= r.held
            self.emit("CreditsReleased", fields={"released_ucr": r.held, "reason": "expired",
                                                 "reservation_id": r.uid})

    def purchase(self, kind: str, pack: str | None, cents: int, credits_ucr: int | None) -> None:
        bonus = 0
        if kind == "pack":
            assert pack is not None
            if pack not in CARD.packs:
                raise Refused(UnknownPack)
            if cents != CARD.packs[pack].price_cents:  # a pack is bought at its price
                raise Refused(PurchaseRejected)
            credits, bonus = ucr(CARD.packs[pack].credits), ucr(CARD.packs[pack].bonus)
        elif kind == "custom":
            if not 100 <= cents <= 10_000_000:  # $1 to $100,000 on the frozen test card
                raise Refused(PurchaseRejected)
            credits = cents * C // 100  # 1 credit per dollar
        else:
            if credits_ucr is None:
                raise Refused(InvalidRequest)
            credits = credits_ucr
        self.expire_due()
        k = self.add_grant("CreditsPurchased", "purchase", credits + bonus, None,
                           {"credits_ucr": credits, "bonus_ucr": bonus})
        self.grants[k].bought = True

    def refund_credit(self, amount: int) -> None:
        self.expire_due()
        self.add_grant("RefundIssued", "refund", amount, None,
                       {"direction": "credit", "requested_ucr": amount, "capped": False})

    def clawback(self, k: int | None, amount: int | None, force: bool = False) -> None:
        """``k``: the grant of the purchase entry the refund names (None: no purchase entry)."""
        if k is None or not self.grants[k].bought:
            raise Refused(NotFound)
        g = self.grants[k]
        outside = self.now > g.granted_at + timedelta(days=CARD.refund_window_days)
        if outside and not force:
            raise Refused(RefundRejected)
        self.expire_due()
        requested = amount if amount is not None else g.original
        taken = min(requested, g.remaining)
        g.remaining -= taken
        self.emit("RefundIssued", -taken, grant=k,
                  fields={"direction": "clawback", "requested_ucr": requested, "capped": taken < requested,
                          "forced": outside, "purchase_id": g.entry})

    def dispute(self, k: int | None, dispute_id: str) -> None:
        """A dispute freezes what is left of the purchase; the same one again changes nothing."""
        if k is None or not self.grants[k].bought:
            raise Refused(NotFound)
        g = self.grants[k]
        if g.dispute is not None:
            if g.dispute == dispute_id:
                return
            raise Refused(InvalidState)
        g.dispute, g.dispute_status, g.frozen = dispute_id, "open", g.remaining
        g.remaining = 0
        self.emit("PurchaseDisputed", -g.frozen, grant=k, fields={"frozen_ucr": g.frozen, "dispute_id": dispute_id})
        self.emit("AlertRaised", 0, fields={"kind": "purchase_disputed", "limit_ucr": g.frozen})

    def close_dispute(self, k: int | None, dispute_id: str, outcome: str) -> None:
        """Won gives the frozen credits back (debt first); lost keeps them gone; closed is final."""
        if k is None or not self.grants[k].bought:
            raise Refused(NotFound)
        g = self.grants[k]
        if g.dispute != dispute_id:
            raise Refused(InvalidState)
        if g.dispute_status != "open":
            if g.dispute_status == outcome:
                return
            raise Refused(InvalidState)
        restored = g.frozen if outcome == "won" else 0
        g.remaining += restored
        g.dispute_status = outcome
        self.emit("DisputeClosed", restored, grant=k, fields={"restored_ucr": restored, "outcome": outcome})
        if restored:
            self.settle_debt(k)

    def start(self, dep: str, instance: str) -> None:
        if dep in self.deployments:
            raise Refused(InvalidState)
        if CARD.operations[instance].kind != "instance":
            raise Refused(InvalidRequest)
        hourly = cost_of(instance, 1, None)
        self.expire_due()
        attribution = Attribution(deployment=dep)
        self.require(hourly, attribution)
        self.deployments[dep] = MDeployment(instance, hourly, "running", 0, timedelta(0), self.now)
        self.emit("DeploymentStarted", fields={"hourly_ucr": hourly})
        self.deployments[dep].hours = 1
        self.debit(hourly, attribution, gated=True, deployment_id=dep, hour_index=0)

    def _deployment(self, dep: str, *statuses: str) -> MDeployment:
        if dep not in self.deployments:
            raise Refused(NotFound)
        d = self.deployments[dep]
        if d.status not in statuses:
            raise Refused(InvalidState)
        return d

    def charge_hour(self, dep: str, hour: int, pause_if_unpaid: bool) -> None:
        d = self._deployment(dep, "running")
        # Hour n is due once n hours of running time are used.
        due = d.segment_start + timedelta(hours=hour) - d.used
        if hour != d.hours or due > self.now:
            raise Refused(InvalidState)
        self.expire_due()
        fails = self.gate(d.hourly, Attribution(deployment=dep))
        if fails:
            if not pause_if_unpaid:
                raise Refused(PaymentRequired, cost=d.hourly, options=fails)
            d.used, d.status = d.used_at(self.now), "paused"
            self.emit("DeploymentPaused", fields={"reason": OneOf(frozenset(r for r, _ in fails))})
            return
        d.hours += 1
        self.debit(d.hourly, Attribution(deployment=dep), gated=True, occurred=max(due, d.segment_start),
                   deployment_id=dep, hour_index=hour)

    def resume(self, dep: str) -> None:
        d = self._deployment(dep, "paused")
        if d.used < timedelta(hours=d.hours):  # paid time left: the clock runs on, nothing is charged
            d.status, d.segment_start = "running", self.now
            self.emit("DeploymentResumed")
            return
        self.expire_due()
        self.require(d.hourly, Attribution(deployment=dep))
        d.status, d.segment_start = "running", self.now
        self.emit("DeploymentResumed")
        d.hours += 1
        self.debit(d.hourly, Attribution(deployment=dep), gated=True, deployment_id=dep, hour_index=d.hours - 1)

    def charge_used_hours(self, dep: str) -> None:
        """As a running deployment's clock stops: every hour due and not charged, metered (never refused)."""
        d = self.deployments[dep]
        due = [n for n in range(d.hours, d.hours + 1 + d.used_at(self.now) // timedelta(hours=1))
               if d.segment_start + timedelta(hours=n) - d.used <= self.now]
        if not due:
            return
        self.expire_due()
        for n in due:
            d.hours += 1
            self.debit(d.hourly, Attribution(deployment=dep), gated=False, deployment_id=dep, hour_index=n,
                       occurred=max(d.segment_start + timedelta(hours=n) - d.used, d.segment_start))

    def pause(self, dep: str) -> None:
        d = self._deployment(dep, "running")
        self.charge_used_hours(dep)
        d.used, d.status = d.used_at(self.now), "paused"
        self.emit("DeploymentPaused", fields={"reason": "paused_by_user"})

    def stop(self, dep: str) -> None:
        d = self._deployment(dep, "running", "paused")
        if d.status == "running":  # a paused one's clock stopped at the pause
            self.charge_used_hours(dep)
        d.used, d.status = d.used_at(self.now), "stopped"
        self.emit("DeploymentStopped")

    def change_plan(self, plan: str) -> None:
        if plan not in CARD.plans:
            raise Refused(UnknownPlan)
        if plan == self.plan:
            raise Refused(InvalidState)
        self.emit("PlanChanged", fields={"old_plan": self.plan, "new_plan": plan})
        self.plan = plan

    def set_budget(self, limit: int | None, hard_stop: bool, warn: int, critical: int) -> None:
        if warn >= critical:
            raise Refused(InvalidRequest)
        self.budget_limit, self.hard_stop = limit, hard_stop
        self.emit("BudgetSet", fields={"monthly_limit_ucr": limit, "hard_stop": hard_stop})

    def set_limit(self, scope: str, subject: str, caps: tuple[int | None, int | None, int | None]) -> None:
        self.limits[(scope, subject)] = caps
        self.emit("LimitSet")


def usage_decision(op: str, q: int | None, qs: dict[str, int] | None, attribution: Attribution,
                   gated: bool) -> Callable[[Model], None]:
    return lambda m: m.usage(op, q, qs, attribution, gated=gated)


# ---- strategies ----------------------------------------------------------------------------------

usages = st.one_of(
    st.tuples(st.just("email"), st.integers(1, 3000), st.none()),
    st.tuples(st.just("image_generate"), st.integers(1, 150), st.none()),
    st.tuples(st.just("voice_minute"), st.integers(1, 600), st.none()),
    st.tuples(st.just("training_h100_per_minute"), st.integers(1, 60), st.none()),
    st.tuples(st.just("gpt-4o"), st.none(), st.fixed_dictionaries(
        {"input_tokens": st.integers(1, 10**6), "output_tokens": st.integers(1, 10**5)})),
)
attributions = st.builds(
    Attribution,
    agent=st.sampled_from([None, "a1", "a2"]),
    member=st.sampled_from([None, "m1"]),
    run=st.sampled_from([None, "r1", "r2"]),
)
caps = st.none() | st.integers(1, 6).map(lambda n: n * C // 2)
Usage = tuple[str, int | None, dict[str, int] | None]


# ---- the machine ---------------------------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    #: Set by the test: a migrated database of this module's own.
    url: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock(T0)
        self.engine = make_engine(self.url, pool_size=4)
        self.ledger = Ledger(self.engine, self.clock, CARD)
        self.run(self.ledger.start())
        self.account = f"sm-{secrets.token_hex(8)}"
        self.model = Model(now=T0, stock={})
        self.opened = False
        self.seen_version = 0
        self.seen_balance = 0
        self.keys: dict[str, c.Charge] = {}
        self.last_key: str | None = None
        self.last_outcome: Outcome | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.run(self.ledger.stop())
            self.run(self.engine.dispose())
        finally:
            self.loop.close()

    async def fetch(self, sql: str, **params: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(text(sql), {"a": self.account, **params})).all())

    # -- deciding, executing and comparing --

    def predict(self, model: Model, decide: Callable[[Model], None]) -> tuple[list[Exp], Refused | None]:
        before = copy.deepcopy(model)
        model.out = []
        try:
            decide(model)
        except Refused as refused:
            model.__dict__.update(before.__dict__)  # a refused command changes nothing
            return [], refused
        return model.out, None

    def step(self, cmd: c.Command, decide: Callable[[Model], None], *, gated: bool = False) -> Outcome | None:
        trial = copy.deepcopy(self.model)
        expected, refusal = self.predict(trial, decide)
        try:
            outcome = self.run(self.ledger.execute(cmd))
        except LedgerError as err:
            assert refusal is not None, f"{cmd!r} refused with {err!r}; the model expected {expected}"
            refusal.check(err)
            return None
        assert refusal is None, f"{cmd!r} gave {[e.type for e in outcome.events]}; the model expected {refusal}"
        self.accept(trial, expected, list(outcome.events))
        spent = any(e.type == "CreditsReserved" or (e.type == "UsageMetered" and getattr(e, "gated")) # noqa: B009
                    for e in outcome.events)
        if gated and spent:
            balance = self.run(self.ledger.balance(self.account, recent=1))
            assert balance.available_ucr >= 0, "a gated command overdrew the account"
        return outcome

    def accept(self, trial: Model, expected: list[Exp], actual: list[Event]) -> None:
        self.compare(trial, expected, actual)
        trial.version += len(actual)
        trial.out = []
        self.model = trial

    def compare(self, trial: Model, expected: list[Exp], actual: list[Event]) -> None:
        assert len(actual) == len(expected), ([e.type for e in actual], [x.type for x in expected])
        # Expiry comes first; which grant expires first among several is not part of the contract.
        n = sum(1 for x in expected if x.type == "GrantExpired")
        assert [e.type for e in actual[:n]] == ["GrantExpired"] * n, [e.type for e in actual]
        uid = {k: g.uid for k, g in trial.grants.items()}
        assert sorted((str(getattr(e, "grant_id", None)), e.amount_ucr) for e in actual[:n]) == sorted(
            (str(uid[x.grant]), x.amount) for x in expected[:n] if x.grant is not None)
        balance = actual[n - 1].balance_after_ucr if n else None
        if n:
            assert balance == expected[n - 1].balance_after
        for x, e in zip(expected[n:], actual[n:], strict=True):
            assert e.type == x.type, ([e.type for e in actual], [x.type for x in expected])
            assert e.amount_ucr == x.amount, (e, x)
            assert e.balance_after_ucr == x.balance_after, (e, x)
            for name, want in x.fields.items():
                got = getattr(e, name)
                if isinstance(want, OneOf):
                    assert got in want.values, (name, got, want)
                else:
                    assert got == want, (e.type, name, got, want)
            if x.new_grant is not None:
                trial.grants[x.new_grant].uid = getattr(e, "grant_id")  # noqa: B009
                trial.grants[x.new_grant].entry = e.event_id
            if x.new_reservation is not None:
                trial.reservations[x.new_reservation].uid = getattr(e, "reservation_id")  # noqa: B009
            if x.grant is not None:
                assert getattr(e, "grant_id") == trial.grants[x.grant].uid  # noqa: B009
            if x.draws is not None:
                self.compare_draws(trial, x.draws, getattr(e, "draws"))  # noqa: B009

    def compare_draws(self, trial: Model, expected: list[tuple[int, int]], draws: tuple[Draw, ...]) -> None:
        by_uid = {g.uid: k for k, g in trial.grants.items()}
        actual = [(by_uid[d.grant_id], d.amount_ucr) for d in draws]
        for d in draws:
            assert d.source == trial.grants[by_uid[d.grant_id]].source
        assert actual == expected, ("draws differ from the burn order", actual, expected)

    # -- rules --

    @initialize(plan=st.sampled_from(["free", "pro", "team"]))
    def open_account(self, plan: str) -> None:
        rows = self.run(self.fetch("SELECT code, max_redemptions, redeemed_count FROM coupons"))
        stock: dict[str, int | None] = {code: cp.max_redemptions for code, cp in CARD.coupons.items()}
        for r in rows:
            if r.code in stock:
                stock[r.code] = None if r.max_redemptions is None else r.max_redemptions - r.redeemed_count
        self.model = Model(now=self.clock.now(), stock=stock)
        self.step(c.OpenAccount(account_id=self.account, name="machine", plan=plan), lambda m: m.open(plan))
        self.opened = True

    @rule(delta=st.sampled_from([timedelta(seconds=30), timedelta(minutes=59), timedelta(hours=1),
                                 timedelta(hours=5), timedelta(days=1), timedelta(days=10), timedelta(days=31)]))
    def advance_clock(self, delta: timedelta) -> None:
        self.clock.advance(delta)
        self.model.now = self.clock.now()

    @rule(days=st.integers(1, 40))
    def advance_days(self, days: int) -> None:
        self.advance_clock(timedelta(days=days))

    @rule(amount=st.integers(1, 10 * C), source=st.sampled_from(["promotion", "refund", "purchase", "allowance"]),
          expires=st.sampled_from([None, None, timedelta(hours=1), timedelta(days=1), timedelta(days=30),
                                   timedelta(0), timedelta(seconds=-1)]))
    def grant_credits(self, amount: int, source: Any, expires: timedelta | None) -> None:
        at = None if expires is None else self.clock.now() + expires
        self.step(c.GrantCredits(account_id=self.account, amount_ucr=amount, source=source, expires_at=at,
                                 reason="machine"), lambda m: m.grant(amount, source, at))

    @rule(code=st.sampled_from(["WELCOME10", "welcome10", "LAUNCH50", "Launch50", "EXPIRED2025", "TINY", "NOPE"]))
    def redeem_coupon(self, code: str) -> None:
        self.step(c.RedeemCoupon(account_id=self.account, code=code), lambda m: m.coupon(code))

    @rule(usage=usages, attribution=attributions)
    def charge(self, usage: Usage, attribution: Attribution) -> None:
        op, q, qs = usage
        # estimate: the same rules as the charge, nothing written (checked by the version invariant).
        estimate = self.run(self.ledger.estimate(self.account, op, quantity=q, quantities=qs,
                                                 attribution=attribution))
        _, refusal = self.predict(copy.deepcopy(self.model), usage_decision(op, q, qs, attribution, True))
        assert estimate.price.amount_ucr == cost_of(op, q, qs)
        assert estimate.sufficient == (refusal is None), (estimate, refusal)
        if refusal is not None:
            assert (estimate.reason, estimate.remaining_ucr) in refusal.options
        self.step(c.Charge(account_id=self.account, operation=op, quantity=q, quantities=qs,
                           attribution=attribution),
                  lambda m: m.usage(op, q, qs, attribution, gated=True), gated=True)

    @rule(usage=usages, attribution=attributions)
    def meter(self, usage: Usage, attribution: Attribution) -> None:
        op, q, qs = usage
        self.step(c.Meter(account_id=self.account, operation=op, quantity=q, quantities=qs, attribution=attribution),
                  lambda m: m.usage(op, q, qs, attribution, gated=False))

    @rule(batch=st.lists(st.tuples(st.booleans(), usages, attributions), min_size=2, max_size=5))
    def burst(self, batch: list[tuple[bool, Usage, Attribution]]) -> None:
        """Several usage commands at once through execute_many: decided in arrival order."""
        commands: list[c.Command] = []
        trial = copy.deepcopy(self.model)
        predictions = []
        for gated, (op, q, qs), attribution in batch:
            cls = c.Charge if gated else c.Meter
            commands.append(cls(account_id=self.account, operation=op, quantity=q, quantities=qs,
                                attribution=attribution))
            predictions.append(self.predict(trial, usage_decision(op, q, qs, attribution, gated)))
        results = self.run(self.ledger.execute_many(commands))
        for (expected, refusal), result in zip(predictions, results, strict=True):
            if isinstance(result, LedgerError):
                assert refusal is not None, f"refused with {result!r}; the model expected {expected}"
                refusal.check(result)
            else:
                assert refusal is None, f"accepted; the model expected {refusal}"
                self.compare(trial, expected, list(result.events))
                trial.version += len(result.events)
        trial.out = []
        self.model = trial
        if all(gated for gated, _, _ in batch) and not all(isinstance(r, LedgerError) for r in results):
            balance = self.run(self.ledger.balance(self.account, recent=1))
            assert balance.available_ucr >= 0, "gated commands overdrew the account"

    @rule(usage=usages, key=st.integers(0, 10**9))
    def charge_with_a_key(self, usage: Usage, key: int) -> None:
        op, q, qs = usage
        cmd = c.Charge(account_id=self.account, operation=op, quantity=q, quantities=qs,
                       idempotency_key=f"k{key}")
        if cmd.idempotency_key in self.keys:
            return
        outcome = self.step(cmd, lambda m: m.usage(op, q, qs, Attribution(), gated=True), gated=True)
        self.last_key = cmd.idempotency_key
        if outcome is not None:
            assert cmd.idempotency_key is not None
            self.keys[cmd.idempotency_key] = cmd
            self.last_outcome = outcome

    @rule(same=st.booleans())
    def replay_the_last_key(self, same: bool) -> None:
        """The same key again: the first result and nothing appended; a different request is a 409."""
        if self.last_key is None:
            return
        first = self.keys.get(self.last_key)
        if first is None:  # refused the first time: a refused command keeps no key
            return
        cmd = first if same else first.model_copy(update={"operation": "sms"})
        try:
            outcome = self.run(self.ledger.execute(cmd))
        except IdempotencyConflict:
            assert not same
            return
        assert same, "a different request with a used key was accepted"
        assert outcome.replayed
        assert self.last_outcome is not None
        assert [e.event_id for e in outcome.events] == [e.event_id for e in self.last_outcome.events]

    @rule(op=st.sampled_from(["training_h100_per_minute", "email"]), quantity=st.integers(1, 120),
          amount=st.none() | st.integers(1, 5 * C), ttl=st.sampled_from([60, 3600, 86400]))
    def reserve(self, op: str, quantity: int, amount: int | None, ttl: int) -> None:
        q = None if amount is not None else quantity
        self.step(c.Reserve(account_id=self.account, operation=op, quantity=q, amount_ucr=amount, ttl_s=ttl),
                  lambda m: m.reserve(op, q, amount, ttl), gated=True)

    def pick_reservation(self, pick: int) -> tuple[int | None, UUID]:
        keys = sorted(self.model.reservations)
        if pick >= 9 or not keys:
            return None, uuid4()
        k = keys[pick % len(keys)]
        uid = self.model.reservations[k].uid
        assert uid is not None
        return k, uid

    @precondition(lambda self: bool(self.model.reservations))
    @rule(pick=st.integers(0, 9), quantity=st.integers(1, 120))
    def settle(self, pick: int, quantity: int) -> None:
        k, uid = self.pick_reservation(pick)
        self.step(c.Settle(account_id=self.account, reservation_id=uid, quantity=quantity),
                  lambda m: m.settle(k, quantity))

    @precondition(lambda self: bool(self.model.reservations))
    @rule(pick=st.integers(0, 9))
    def release(self, pick: int) -> None:
        k, uid = self.pick_reservation(pick)
        self.step(c.Release(account_id=self.account, reservation_id=uid), lambda m: m.release(k))

    @rule()
    def expire_reservations(self) -> None:
        self.step(c.ExpireReservations(account_id=self.account), lambda m: m.expire_reservations())

    @rule(choice=st.one_of(
        st.tuples(st.just("pack"), st.sampled_from(["starter", "builder", "scale", "mega"]), st.sampled_from(
            [-1, -1, 10]), st.none()),  # -1: the pack's price
        st.tuples(st.just("custom"), st.none(), st.sampled_from([50, 100, 250, 1999, 1999, 20_000_000]), st.none()),
        st.tuples(st.sampled_from(["subscription", "auto_refill"]), st.none(), st.just(2000),
                  st.integers(1, 30 * C) | st.none()),
    ))
    def record_purchase(self, choice: tuple[Any, str | None, int, int | None]) -> None:
        kind, pack, cents, credits = choice
        if kind == "pack" and cents == -1:
            cents = CARD.packs[pack].price_cents if pack in CARD.packs else 100
        self.step(c.RecordPurchase(account_id=self.account, kind=kind, pack_id=pack, cents_paid=cents,
                                   credits_ucr=credits), lambda m: m.purchase(kind, pack, cents, credits))

    @rule(amount=st.integers(1, 5 * C))
    def refund_credit(self, amount: int) -> None:
        self.step(c.IssueRefund(account_id=self.account, direction="credit", amount_ucr=amount, reason="machine"),
                  lambda m: m.refund_credit(amount))

    @rule(pick=st.integers(0, 9), amount=st.none() | st.integers(1, 20 * C), force=st.booleans())
    def clawback(self, pick: int, amount: int | None, force: bool) -> None:
        """Mostly a purchase's ledger entry; sometimes another grant's entry, a grant id or an unknown id."""
        purchases = sorted(k for k, g in self.model.grants.items() if g.bought)
        others = sorted(k for k, g in self.model.grants.items() if not g.bought)
        k: int | None = None
        uid: UUID | None = uuid4()
        if pick < 7 and purchases:
            k = purchases[pick % len(purchases)]
            uid = self.model.grants[k].entry
        elif pick < 8 and others:
            uid = self.model.grants[others[pick % len(others)]].entry  # a grant, but not a purchase's entry
        elif pick < 9 and purchases:
            uid = self.model.grants[purchases[0]].uid  # a purchase's grant id is not its entry id
        assert uid is not None
        self.step(c.IssueRefund(account_id=self.account, direction="clawback", purchase_id=uid, amount_ucr=amount,
                                reason="stripe refund", force=force), lambda m: m.clawback(k, amount, force))

    def _purchase_pick(self, pick: int) -> tuple[int | None, UUID]:
        """Mostly a purchase's ledger entry; sometimes another grant's entry or an unknown id."""
        purchases = sorted(k for k, g in self.model.grants.items() if g.bought)
        others = sorted(k for k, g in self.model.grants.items() if not g.bought)
        if pick < 8 and purchases:
            k = purchases[pick % len(purchases)]
            entry = self.model.grants[k].entry
            assert entry is not None
            return k, entry
        if pick < 9 and others:
            entry = self.model.grants[others[pick % len(others)]].entry
            assert entry is not None
            return None, entry
        return None, uuid4()

    @rule(pick=st.integers(0, 9), dispute_id=st.sampled_from(["dp_1", "dp_1", "dp_2"]))
    def dispute(self, pick: int, dispute_id: str) -> None:
        k, uid = self._purchase_pick(pick)
        self.step(c.RecordDispute(account_id=self.account, purchase_id=uid, dispute_id=dispute_id,
                                  reason="fraudulent"), lambda m: m.dispute(k, dispute_id))

    @rule(pick=st.integers(0, 9), dispute_id=st.sampled_from(["dp_1", "dp_1", "dp_2"]),
          outcome=st.sampled_from(["won", "lost"]))
    def close_dispute(self, pick: int, dispute_id: str, outcome: str) -> None:
        k, uid = self._purchase_pick(pick)
        self.step(c.CloseDispute(account_id=self.account, purchase_id=uid, dispute_id=dispute_id,
                                 outcome=outcome),  # type: ignore[arg-type]
                  lambda m: m.close_dispute(k, dispute_id, outcome))

    @rule(offset=st.sampled_from([-1, 0, 0, 1]))
    def grant_allowance(self, offset: int) -> None:
        m = self.model
        elapsed = (m.now.year - m.opened_at.year) * 12 + m.now.month - m.opened_at.month
        if add_months(m.opened_at, elapsed) > m.now:
            elapsed -= 1
        cycle = max(elapsed + offset, 0)
        self.step(c.GrantAllowance(account_id=self.account, cycle=cycle), lambda m: m.allowance(cycle))

    @rule()
    def expire_grants(self) -> None:
        self.step(c.ExpireGrants(account_id=self.account), lambda m: m.expire_due())

    def pick_deployment(self, pick: int) -> str:
        """Mostly a deployment the account has; sometimes one it never started."""
        existing = sorted(self.model.deployments)
        if pick >= 8 or not existing:
            return f"ghost-{pick}"
        return existing[pick % len(existing)]

    @rule(pick=st.integers(0, 9), instance=st.sampled_from(["cpu-s", "gpu-s", "gpu-l", "email"]))
    def start_deployment(self, pick: int, instance: str) -> None:
        # Mostly a new id; sometimes one that exists (refused whatever its state).
        dep = f"d{len(self.model.deployments)}" if pick < 7 else self.pick_deployment(pick - 7)
        if instance == "email" and dep in self.model.deployments:
            return  # which of two refusals comes first is not part of the contract
        self.step(c.StartDeployment(account_id=self.account, deployment_id=dep, instance_type=instance),
                  lambda m: m.start(dep, instance), gated=True)

    @precondition(lambda self: bool(self.model.deployments))
    @rule(pick=st.integers(0, 9), offset=st.sampled_from([-1, 0, 0, 0, 1]), pause=st.booleans())
    def charge_deployment_hour(self, pick: int, offset: int, pause: bool) -> None:
        dep = self.pick_deployment(pick)
        d = self.model.deployments.get(dep)
        hour = max((d.hours if d else 0) + offset, 0)
        self.step(c.ChargeDeploymentHour(account_id=self.account, deployment_id=dep, hour_index=hour,
                                         pause_if_unpaid=pause),
                  lambda m: m.charge_hour(dep, hour, pause), gated=True)

    @precondition(lambda self: bool(self.model.deployments))
    @rule(pick=st.integers(0, 9))
    def pause_deployment(self, pick: int) -> None:
        dep = self.pick_deployment(pick)
        self.step(c.PauseDeployment(account_id=self.account, deployment_id=dep), lambda m: m.pause(dep))

    @precondition(lambda self: bool(self.model.deployments))
    @rule(pick=st.integers(0, 9))
    def resume_deployment(self, pick: int) -> None:
        dep = self.pick_deployment(pick)
        self.step(c.ResumeDeployment(account_id=self.account, deployment_id=dep), lambda m: m.resume(dep),
                  gated=True)

    @precondition(lambda self: bool(self.model.deployments))
    @rule(pick=st.integers(0, 9))
    def stop_deployment(self, pick: int) -> None:
        dep = self.pick_deployment(pick)
        self.step(c.StopDeployment(account_id=self.account, deployment_id=dep), lambda m: m.stop(dep))

    @rule(plan=st.sampled_from(["free", "pro", "team", "enterprise"]))
    def change_plan(self, plan: str) -> None:
        self.step(c.ChangePlan(account_id=self.account, plan=plan), lambda m: m.change_plan(plan))

    @rule(limit=caps, hard_stop=st.booleans(), bad=st.booleans())
    def set_budget(self, limit: int | None, hard_stop: bool, bad: bool) -> None:
        warn, critical = (95, 80) if bad else (80, 95)
        self.step(c.SetBudget(account_id=self.account, monthly_limit_ucr=limit, hard_stop=hard_stop, warn_pct=warn,
                              critical_pct=critical), lambda m: m.set_budget(limit, hard_stop, warn, critical))

    @rule(scope=st.sampled_from(["agent", "member"]), subject=st.sampled_from(["a1", "a2", "m1"]),
          per_run=caps, per_day=caps, per_month=caps)
    def set_limit(self, scope: Any, subject: str, per_run: int | None, per_day: int | None,
                  per_month: int | None) -> None:
        self.step(c.SetLimit(account_id=self.account, scope=scope, subject=subject, per_run_ucr=per_run,
                             per_day_ucr=per_day, per_month_ucr=per_month),
                  lambda m: m.set_limit(scope, subject, (per_run, per_day, per_month)))

    # -- invariants --

    @invariant()
    def service_matches_model(self) -> None:
        if not self.opened:
            return
        m = self.model
        b = self.run(self.ledger.balance(self.account, recent=1))
        assert (b.balance_ucr, b.debt_ucr, b.reserved_ucr) == (m.balance, m.debt, m.reserved)
        assert b.available_ucr == m.balance - m.reserved
        assert b.status == ("in_debt" if m.debt > 0 else "active")
        assert b.plan == m.plan
        assert b.version == m.version, "the account's version differs: events were appended or lost"
        # The inline grants add up to the balance, and each equals the model's.
        rows = self.run(self.fetch(
            "SELECT grant_id, source, original_ucr, remaining_ucr, expires_at FROM grants WHERE account_id = :a"))
        assert sum(r.remaining_ucr for r in rows) - b.debt_ucr == b.balance_ucr
        stored = {UUID(str(r.grant_id)): r for r in rows}
        assert set(stored) == {g.uid for g in m.grants.values()}
        for g in m.grants.values():
            assert g.uid is not None
            r = stored[g.uid]
            assert (r.source, r.original_ucr, r.remaining_ucr, r.expires_at) == (
                g.source, g.original, g.remaining, g.expires_at)
            assert 0 <= r.remaining_ucr <= r.original_ucr
        by_source = {s: sum(g.remaining for g in m.grants.values() if g.source == s) for s in RANK}
        assert dict(b.by_source) == by_source
        deployments = {r.deployment_id: (r.status, r.hours_charged, timedelta(microseconds=r.used_us))
                       for r in self.run(self.fetch(
                           "SELECT deployment_id, status, hours_charged, used_us FROM deployments"
                           " WHERE account_id = :a"))}
        assert deployments == {k: (d.status, d.hours, d.used) for k, d in m.deployments.items()}
        # The events' balance chain, read from the log.
        events = self.run(self.fetch(
            "SELECT version, amount_ucr, balance_after_ucr FROM events WHERE account_id = :a AND version > :v"
            " ORDER BY version", v=self.seen_version))
        for e in events:
            assert e.version == self.seen_version + 1
            assert e.balance_after_ucr == self.seen_balance + e.amount_ucr
            self.seen_version, self.seen_balance = e.version, e.balance_after_ucr
        assert (self.seen_version, self.seen_balance) == (m.version, m.balance)


# ---- the tests -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def machine_database_url(server_url: str, template_database: str) -> Iterator[str]:
    """A migrated database of this module's own (coupon stock is global to a database)."""
    loop = asyncio.new_event_loop()
    try:
        name = loop.run_until_complete(create_database(server_url, "credits_machine", template=template_database))
        try:
            yield with_database(server_url, name)
        finally:
            loop.run_until_complete(drop_database(server_url, name))
    finally:
        loop.close()


def test_ledger_matches_a_simple_model(machine_database_url: str) -> None:
    LedgerMachine.url = machine_database_url
    run_state_machine_as_test(LedgerMachine, settings=settings(
        max_examples=30, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


def test_clawback_after_burning_never_expiring_grants(machine_database_url: str) -> None:
    """Regression (burn order, fixed in b736686): a refund credit granted after a purchase burns first."""
    LedgerMachine.url = machine_database_url
    m = LedgerMachine()
    try:
        m.open_account("free")  # 5 signup credits, expiring
        m.record_purchase(("pack", "starter", -1, None))  # 10 credits at the pack's price, never expire
        m.service_matches_model()
        m.advance_clock(timedelta(hours=1))
        m.refund_credit(2 * C)  # 2 credits, never expire: refund burns before purchase
        m.service_matches_model()
        m.charge(("email", 6000, None), Attribution())  # 6 credits: signup 5 + refund 1
        m.service_matches_model()
        purchase = next(g for g in m.model.grants.values() if g.source == "purchase")
        assert purchase.remaining == 10 * C
        m.clawback(0, None, False)  # the untouched purchase: all 10 credits come back
        m.service_matches_model()
        assert m.model.balance == C  # what is left of the refund credit
    finally:
        m.teardown()


def test_a_dispute_freezes_and_a_won_one_pays_debt_first(machine_database_url: str) -> None:
    """The dispute rules driven in one deterministic run (the random runs reach them only now and then)."""
    LedgerMachine.url = machine_database_url
    m = LedgerMachine()
    try:
        m.open_account("free")  # 5 signup credits
        m.record_purchase(("pack", "starter", -1, None))  # 10 credits
        m.charge(("email", 7000, None), Attribution())  # signup 5, then 2 of the purchase
        m.dispute(0, "dp_1")  # 8 frozen
        m.service_matches_model()
        assert m.model.balance == 0
        m.dispute(0, "dp_1")  # again: nothing
        m.dispute(0, "dp_2")  # another dispute of the same purchase: refused
        m.close_dispute(0, "dp_2", "won")  # not its dispute: refused
        m.meter(("email", 3000, None), Attribution())  # 3 credits of debt
        m.close_dispute(0, "dp_1", "won")  # 8 back, 3 of them pay the debt
        m.service_matches_model()
        assert (m.model.debt, m.model.balance) == (0, 5 * C)
        m.close_dispute(0, "dp_1", "lost")  # closed is final: refused
        m.clawback(0, None, False)  # what is left of the purchase after the win
        m.service_matches_model()
        assert m.model.balance == 0
    finally:
        m.teardown()


async def test_a_balance_overflowing_bigint_is_refused_not_a_database_error(ledger: Ledger) -> None:
    """Regression (fixed in 1a522d1): a balance past ±MAX_UCR is a 422, never a BIGINT overflow (a 500)."""
    account = f"ovf-{secrets.token_hex(6)}"
    await ledger.execute(c.OpenAccount(account_id=account, name="overflow"))  # 5 signup credits
    await ledger.execute(c.GrantCredits(account_id=account, amount_ucr=MAX_UCR - 5_000_000, source="purchase",
                                        reason="x"))
    before = await ledger.balance(account, recent=1)
    assert before.balance_ucr == MAX_UCR
    with pytest.raises(InvalidRequest):
        await ledger.execute(c.GrantCredits(account_id=account, amount_ucr=MAX_UCR, source="purchase", reason="x"))
    assert (await ledger.balance(account, recent=1)).version == before.version
