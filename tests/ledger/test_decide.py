"""decide: given events, when a command, then events. Pure: no database, no clock, no random ids.

State is built by folding events (``decide`` returns the fold, checked against ``fold``), the
context has a fixed ``now``, the test suite's frozen card and ids 1, 2, 3... Every amount is worked
out by hand from ``tests/data/rates.toml`` (1 credit = 1,000,000 µcr).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import commands as c
from ledger.decide import Context, decide, fold
from ledger.errors import (
    AccountExists,
    CouponRejected,
    InvalidRequest,
    InvalidState,
    LedgerError,
    NotFound,
    OutOfRange,
    PaymentRequired,
    PurchaseRejected,
    RefundRejected,
    UnknownAccount,
    UnknownOperation,
    UnknownPlan,
)
from ledger.events import (
    AccountOpened,
    AllowanceGranted,
    Attribution,
    BudgetSet,
    CouponApplied,
    CreditsGranted,
    CreditsPurchased,
    CreditsReleased,
    CreditsReserved,
    DebtSettled,
    DeploymentPaused,
    DeploymentResumed,
    DeploymentStarted,
    DeploymentStopped,
    Event,
    EventBase,
    GrantExpired,
    LimitSet,
    RefundIssued,
    UsageMetered,
)
from ledger.money import MAX_SPEND_UCR, MAX_UCR
from ledger.rates import CustomAmount, RateCard, sample_rate_card
from ledger.state import AccountState, CountersNotLoaded
from tests.cards import frozen_rate_card

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
CARD = frozen_rate_card()
ACCT = "acct-1"
C = 1_000_000  # µcr per credit
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

E = TypeVar("E", bound=LedgerError)
V = TypeVar("V", bound=EventBase)


class Ids:
    """Deterministic ids: UUID(int=1), UUID(int=2), ..."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> UUID:
        self.n += 1
        return UUID(int=self.n)


class Scenario:
    """One account's history: ``given`` builds it, ``when`` runs a command, ``refused`` expects an error."""

    def __init__(self, account_id: str = ACCT, now: datetime = T0, card: RateCard = CARD) -> None:
        self.account_id = account_id
        self.now = now
        self.card = card
        self.ids = Ids()
        self.state = AccountState(account_id=account_id)
        self.history: list[Event] = []
        self.coupon_stock: dict[str, int | None] = {}

    def ctx(self) -> Context:
        return Context(now=self.now, card=self.card, new_id=self.ids, coupon_stock=self.coupon_stock)

    def at(self, when: datetime) -> Scenario:
        self.now = when
        return self

    def advance(self, delta: timedelta) -> Scenario:
        self.now += delta
        return self

    def event(self, cls: type[V], amount_ucr: int = 0, **fields: Any) -> V:
        """An event as the ledger would have recorded it now (for ``given_events``)."""
        return cls(event_id=self.ids(), account_id=self.account_id, occurred_at=self.now, recorded_at=self.now,
                   amount_ucr=amount_ucr, balance_after_ucr=self.state.balance_ucr + amount_ucr, **fields)

    def given_events(self, *events: Event) -> Scenario:
        for e in events:
            self.state = fold(self.state, [e])
            self.history.append(e)
        return self

    def given(self, *commands: c.Command) -> Scenario:
        for cmd in commands:
            self.when(cmd)
        return self

    def when(self, cmd: c.Command) -> list[Event]:
        before = self.state
        events, after = decide(before, cmd, self.ctx())
        balance = before.balance_ucr
        for e in events:
            assert e.account_id == self.account_id
            assert e.recorded_at == self.now
            assert e.idempotency_key == cmd.idempotency_key
            assert type(e.amount_ucr) is int and type(e.balance_after_ucr) is int
            assert e.balance_after_ucr == balance + e.amount_ucr, e
            balance = e.balance_after_ucr
        assert after.balance_ucr == balance
        assert fold(before, events) == after  # the returned state is the fold of the events
        assert after.balance_ucr == sum(g.remaining_ucr for g in after.grants.values()) - after.debt_ucr
        assert all(g.remaining_ucr >= 0 for g in after.grants.values())
        self.state = after
        self.history += events
        return events

    def refused(self, cmd: c.Command, error: type[E]) -> E:
        before = self.state
        with pytest.raises(error) as info:
            decide(before, cmd, self.ctx())
        assert self.state is before  # nothing to fold: a refused command has no events
        return info.value


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


def only(events: list[Event], cls: type[V]) -> V:
    found = [e for e in events if isinstance(e, cls)]
    assert len(found) == 1, types(events)
    return found[0]


def open_cmd(plan: str | None = None, account_id: str = ACCT) -> c.OpenAccount:
    return c.OpenAccount(account_id=account_id, name="Ada", plan=plan)


def charge(op: str = "email", quantity: int = 1, *, agent: str | None = None, member: str | None = None,
           run: str | None = None, key: str | None = None) -> c.Charge:
    return c.Charge(account_id=ACCT, operation=op, quantity=quantity, idempotency_key=key,
                    attribution=Attribution(agent=agent, member=member, run=run))


def meter(op: str = "email", quantity: int = 1) -> c.Meter:
    return c.Meter(account_id=ACCT, operation=op, quantity=quantity)


def purchase(pack: str = "starter", cents: int | None = None) -> c.RecordPurchase:
    """A pack bought at ``cents`` (default: its price on the card)."""
    paid = CARD.packs[pack].price_cents if cents is None else cents
    return c.RecordPurchase(account_id=ACCT, kind="pack", pack_id=pack, cents_paid=paid)


def grant(amount: int, source: Any = "promotion", expires_at: datetime | None = None) -> c.GrantCredits:
    return c.GrantCredits(account_id=ACCT, amount_ucr=amount, source=source, expires_at=expires_at, reason="test")


def free_account() -> Scenario:
    """A free account: 5 signup credits (promotion) expiring T0 + 30 days."""
    return Scenario().given(open_cmd("free"))


def grant_of(s: Scenario, event_type: type[Any]) -> UUID:
    gid: UUID = next(e for e in reversed(s.history) if isinstance(e, event_type)).grant_id
    return gid


def purchase_entry(s: Scenario) -> CreditsPurchased:
    """The latest purchase: its ``event_id`` is the ledger entry id a refund names."""
    return next(e for e in reversed(s.history) if isinstance(e, CreditsPurchased))


def draws(e: UsageMetered | DebtSettled) -> list[tuple[UUID, str, int]]:
    return [(d.grant_id, d.source, d.amount_ucr) for d in e.draws]


# ---- opening an account ------------------------------------------------------------------------


def test_open_free_account_grants_expiring_signup_credits() -> None:
    s = Scenario()
    events = s.when(open_cmd())  # no plan: the card's default (free)
    assert types(events) == ["AccountOpened", "CreditsGranted"]
    opened, signup = events
    assert isinstance(opened, AccountOpened) and isinstance(signup, CreditsGranted)
    assert (opened.plan, opened.name, opened.amount_ucr, opened.balance_after_ucr) == ("free", "Ada", 0, 0)
    assert signup.source == "promotion"
    assert signup.reason == "signup"
    assert signup.amount_ucr == 5 * C
    assert signup.expires_at == T0 + timedelta(days=30)
    assert signup.balance_after_ucr == 5 * C
    assert s.state.exists and s.state.plan == "free" and s.state.status == "active"
    assert s.state.balance_ucr == 5 * C


@pytest.mark.parametrize(("plan", "signup", "signup_days", "allowance"),
                         [("pro", 5, 30, 25), ("team", 20, 60, 150)])
def test_open_paid_plan_grants_allowance_for_the_first_cycle(
    plan: str, signup: int, signup_days: int, allowance: int
) -> None:
    s = Scenario()
    events = s.when(open_cmd(plan))
    assert types(events) == ["AccountOpened", "CreditsGranted", "AllowanceGranted"]
    credits, monthly = events[1], events[2]
    assert isinstance(credits, CreditsGranted) and isinstance(monthly, AllowanceGranted)
    assert credits.amount_ucr == signup * C
    assert credits.expires_at == T0 + timedelta(days=signup_days)
    assert monthly.amount_ucr == allowance * C
    assert (monthly.plan, monthly.cycle) == (plan, 0)
    assert monthly.expires_at == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # one calendar month later
    assert s.state.balance_ucr == (signup + allowance) * C
    assert s.state.allowance_cycle == 0


def test_open_refusals() -> None:
    s = free_account()
    s.refused(open_cmd(), AccountExists)
    Scenario().refused(open_cmd("enterprise"), UnknownPlan)
    for cmd in (charge(), meter(), purchase(), c.ExpireGrants(account_id=ACCT)):
        Scenario().refused(cmd, UnknownAccount)


# ---- gating and metering -----------------------------------------------------------------------


def test_gated_charge_refused_records_nothing() -> None:
    s = free_account()
    # 126 images × 0.04 = 5.04 credits, the account has 5.
    refused = s.refused(charge("image_generate", 126), PaymentRequired)
    assert refused.required_ucr == 5_040_000
    assert refused.remaining_ucr == 5 * C
    assert refused.reason == "insufficient_balance"
    assert refused.upgrade_url == CARD.upgrade_url
    assert refused.status == 402
    problem = refused.problem()
    assert (problem["required"], problem["remaining"], problem["reason"]) == ("5.040000", "5.000000",
                                                                              "insufficient_balance")
    assert s.state.balance_ucr == 5 * C
    # Exactly the balance is allowed; then nothing more.
    e = only(s.when(charge("image_generate", 125)), UsageMetered)
    assert (e.cost_ucr, e.amount_ucr, e.gated, e.balance_after_ucr) == (5 * C, -5 * C, True, 0)
    assert e.rate_card_version == CARD.version
    assert e.quantities == {"images": 125}
    assert s.refused(charge("email", 1), PaymentRequired).remaining_ucr == 0


def test_metering_beyond_the_balance_creates_debt() -> None:
    s = free_account()
    signup = grant_of(s, CreditsGranted)
    events = s.when(meter("image_generate", 200))  # 8 credits, 5 available
    e = only(events, UsageMetered)
    assert types(events) == ["UsageMetered"]
    assert e.gated is False
    assert (e.cost_ucr, e.amount_ucr) == (8 * C, -8 * C)
    assert draws(e) == [(signup, "promotion", 5 * C)]
    assert e.debt_added_ucr == 3 * C
    assert e.balance_after_ucr == -3 * C
    assert (s.state.debt_ucr, s.state.balance_ucr, s.state.available_ucr) == (3 * C, -3 * C, -3 * C)
    assert s.state.status == "in_debt"
    # In debt, gated work is refused even for a single email.
    refused = s.refused(charge("email", 1), PaymentRequired)
    assert (refused.reason, refused.remaining_ucr) == ("insufficient_balance", 0)
    s.refused(c.StartDeployment(account_id=ACCT, deployment_id="d", instance_type="cpu-s"), PaymentRequired)
    # More metering keeps adding debt.
    assert only(s.when(meter("email", 500)), UsageMetered).debt_added_ucr == 500_000
    assert s.state.debt_ucr == 3_500_000


@pytest.mark.parametrize(
    ("cmd", "event_type", "added", "settled"),
    [
        (purchase("starter", 1000), CreditsPurchased, 10 * C, 3 * C),
        (grant(2 * C), CreditsGranted, 2 * C, 2 * C),
        (c.RedeemCoupon(account_id=ACCT, code="WELCOME10"), CouponApplied, 10 * C, 3 * C),
        (c.IssueRefund(account_id=ACCT, direction="credit", amount_ucr=C, reason="failed run"), RefundIssued, C, C),
        (c.RecordPurchase(account_id=ACCT, kind="custom", cents_paid=250), CreditsPurchased, 2_500_000, 2_500_000),
    ],
)
def test_new_credits_pay_the_debt_first(cmd: c.Command, event_type: type[Any], added: int, settled: int) -> None:
    s = free_account()
    s.when(meter("image_generate", 200))  # debt 3 credits
    events = s.when(cmd)
    assert types(events) == [event_type.__name__, "DebtSettled"]
    credited, settlement = events
    assert isinstance(settlement, DebtSettled)
    assert credited.amount_ucr == added
    assert credited.balance_after_ucr == added - 3 * C
    assert settlement.settled_ucr == settled
    assert settlement.amount_ucr == 0  # the balance already counted the debt
    assert settlement.balance_after_ucr == added - 3 * C
    assert isinstance(credited, CreditsPurchased | CreditsGranted | CouponApplied | RefundIssued)
    new_grant = credited.grant_id
    assert [(d.grant_id, d.amount_ucr) for d in settlement.draws] == [(new_grant, settled)]
    assert s.state.grants[new_grant].remaining_ucr == added - settled
    assert s.state.debt_ucr == 3 * C - settled
    assert s.state.status == ("active" if settled == 3 * C else "in_debt")


def test_no_debt_no_settlement_and_gated_work_resumes_after_paying() -> None:
    s = free_account()
    assert types(s.when(purchase())) == ["CreditsPurchased"]
    s.when(meter("image_generate", 500))  # 20 credits of 15: 5 of debt
    s.refused(charge(), PaymentRequired)
    s.when(purchase("starter"))
    assert s.state.status == "active"
    assert only(s.when(charge("email", 5000)), UsageMetered).balance_after_ucr == 0


# ---- burn order --------------------------------------------------------------------------------


def burn_order_account(*, later: timedelta) -> tuple[Scenario, dict[str, UUID]]:
    """Grants of every source, given as events; the never-expiring refund and promotion are ``later``."""
    s = Scenario()
    s.given_events(s.event(AccountOpened, name="Ada", plan="pro"))
    ids: dict[str, UUID] = {}

    def add(name: str, cls: type[Any], amount: int, **fields: Any) -> None:
        ids[name] = s.ids()
        s.given_events(s.event(cls, amount, grant_id=ids[name], **fields))

    add("purchase", CreditsPurchased, 10 * C, kind="pack", pack_id="starter", cents_paid=1000, credits_ucr=10 * C,
        bonus_ucr=0)
    s.advance(later)
    add("promo_20d", CreditsGranted, C, source="promotion", expires_at=T0 + timedelta(days=20), reason="x")
    add("allowance", AllowanceGranted, 2 * C, plan="pro", cycle=0, expires_at=T0 + timedelta(days=20))
    add("promo_5d", CreditsGranted, C, source="promotion", expires_at=T0 + timedelta(days=5), reason="x")
    add("refund", RefundIssued, C, direction="credit", requested_ucr=C, reason="x")
    add("promo_forever", CreditsGranted, C, source="promotion", reason="x")
    s.advance(HOUR)
    assert s.state.balance_ucr == 16 * C
    return s, ids


def test_burn_order_across_sources() -> None:
    s, g = burn_order_account(later=timedelta(0))  # granted together: only expiry and source decide
    e = only(s.when(charge("email", 6500)), UsageMetered)  # 6.5 credits
    assert draws(e) == [
        (g["promo_5d"], "promotion", C),  # soonest expiry
        (g["promo_20d"], "promotion", C),  # same expiry: promotion before allowance
        (g["allowance"], "allowance", 2 * C),
        (g["promo_forever"], "promotion", C),  # never expire: promotion, refund, purchase
        (g["refund"], "refund", C),
        (g["purchase"], "purchase", 500_000),
    ]
    assert s.state.grants[g["purchase"]].remaining_ucr == 9_500_000


def test_burn_order_ignores_age_for_grants_that_never_expire() -> None:
    s, g = burn_order_account(later=HOUR)  # the purchase is the oldest grant
    e = only(s.when(charge("email", 6500)), UsageMetered)
    assert [d.grant_id for d in e.draws] == [g["promo_5d"], g["promo_20d"], g["allowance"], g["promo_forever"],
                                             g["refund"], g["purchase"]]
    refund = only(s.when(c.IssueRefund(account_id=ACCT, direction="clawback", purchase_id=purchase_entry(s).event_id,
                                       reason="stripe refund")), RefundIssued)
    assert refund.amount_ucr == -9_500_000


# ---- expiry ------------------------------------------------------------------------------------


def test_grant_expiry_expires_exactly_what_was_left() -> None:
    s = free_account()
    signup = grant_of(s, CreditsGranted)
    s.when(c.RecordPurchase(account_id=ACCT, kind="custom", cents_paid=100))  # 1 credit, never expires
    s.when(charge("email", 2000))  # 2 credits from the signup promotion
    s.advance(timedelta(days=30) - timedelta(seconds=1))
    assert s.when(c.ExpireGrants(account_id=ACCT)) == []  # not yet
    s.advance(timedelta(seconds=1))
    events = s.when(c.ExpireGrants(account_id=ACCT))
    e = only(events, GrantExpired)
    assert types(events) == ["GrantExpired"]
    assert (e.grant_id, e.source, e.expired_ucr, e.amount_ucr) == (signup, "promotion", 3 * C, -3 * C)
    assert e.balance_after_ucr == C
    assert s.state.grants[signup].remaining_ucr == 0
    assert s.when(c.ExpireGrants(account_id=ACCT)) == []  # nothing twice


def test_a_charge_after_expiry_cannot_spend_expired_credits() -> None:
    s = free_account()
    s.when(c.RecordPurchase(account_id=ACCT, kind="custom", cents_paid=100))  # 1 credit
    s.at(T0 + timedelta(days=30))
    # 5 signup credits are in the state but expired: 2 credits are refused, nothing is recorded.
    refused = s.refused(charge("email", 2000), PaymentRequired)
    assert refused.remaining_ucr == C
    events = s.when(charge("email", 500))
    assert types(events) == ["GrantExpired", "UsageMetered"]
    assert events[0].amount_ucr == -5 * C
    assert draws(only(events, UsageMetered)) == [(grant_of(s, CreditsPurchased), "purchase", 500_000)]
    assert s.state.balance_ucr == 500_000


def test_credits_are_spendable_until_the_instant_they_expire() -> None:
    s = free_account().at(T0 + timedelta(days=30) - timedelta(microseconds=1))
    e = only(s.when(charge("email", 5000)), UsageMetered)
    assert e.balance_after_ucr == 0


def test_metering_after_expiry_turns_into_debt_not_into_expired_credits() -> None:
    s = free_account().at(T0 + timedelta(days=31))
    events = s.when(meter("email", 1000))
    assert types(events) == ["GrantExpired", "UsageMetered"]
    assert only(events, UsageMetered).debt_added_ucr == C
    assert s.state.balance_ucr == -C


# ---- budgets and limits ------------------------------------------------------------------------


def funded(credits_pack: str = "starter") -> Scenario:
    """A free account with 5 signup + 10 purchased credits."""
    return free_account().given(purchase(credits_pack))


def test_monthly_budget_hard_stop() -> None:
    s = funded()
    budget = only(s.when(c.SetBudget(account_id=ACCT, monthly_limit_ucr=C, hard_stop=True)), BudgetSet)
    assert (budget.amount_ucr, budget.monthly_limit_ucr, budget.hard_stop) == (0, C, True)
    s.when(charge("email", 600))
    refused = s.refused(charge("email", 600), PaymentRequired)
    assert (refused.reason, refused.required_ucr, refused.remaining_ucr) == ("budget_hard_limit", 600_000, 400_000)
    s.when(charge("email", 400))  # exactly up to the limit
    assert s.refused(charge("email", 1), PaymentRequired).remaining_ucr == 0
    # Metering is never refused; it still counts against the month.
    s.when(meter("email", 1000))
    assert s.refused(charge("email", 1), PaymentRequired).reason == "budget_hard_limit"
    s.refused(c.Reserve(account_id=ACCT, operation="email", amount_ucr=1), PaymentRequired)
    s.refused(c.StartDeployment(account_id=ACCT, deployment_id="d", instance_type="cpu-s"), PaymentRequired)
    # A new month starts from zero.
    s.at(datetime(2026, 12, 1, 0, 0, tzinfo=UTC))
    s.when(charge("email", 600))


def test_budget_without_hard_stop_does_not_refuse() -> None:
    s = funded()
    s.when(c.SetBudget(account_id=ACCT, monthly_limit_ucr=C, hard_stop=False))
    for _ in range(3):
        s.when(charge("email", 600))
    assert s.state.balance_ucr == 15 * C - 1_800_000
    s.refused(c.SetBudget(account_id=ACCT, monthly_limit_ucr=C, warn_pct=95, critical_pct=80), InvalidRequest)


def test_budget_hard_stop_counts_what_is_reserved() -> None:
    s = funded()
    s.when(c.SetBudget(account_id=ACCT, monthly_limit_ucr=C, hard_stop=True))
    s.when(c.Reserve(account_id=ACCT, operation="email", amount_ucr=800_000))
    refused = s.refused(c.Reserve(account_id=ACCT, operation="email", amount_ucr=800_000), PaymentRequired)
    assert (refused.reason, refused.remaining_ucr) == ("budget_hard_limit", 200_000)


def test_agent_limits_per_run_day_and_month() -> None:
    s = funded("builder")  # 5 + 55 credits
    limit = only(s.when(c.SetLimit(account_id=ACCT, scope="agent", subject="bot", per_run_ucr=C,
                                   per_day_ucr=2 * C, per_month_ucr=3 * C)), LimitSet)
    assert limit.amount_ucr == 0
    s.when(charge("email", 600, agent="bot", run="r1"))
    refused = s.refused(charge("email", 600, agent="bot", run="r1"), PaymentRequired)
    assert (refused.reason, refused.remaining_ucr) == ("agent_limit", 400_000)  # per run: 1 - 0.6
    s.when(charge("email", 600, agent="bot", run="r2"))
    s.when(charge("email", 600, agent="bot", run="r3"))  # 1.8 today
    refused = s.refused(charge("email", 600, agent="bot", run="r4"), PaymentRequired)
    assert (refused.reason, refused.remaining_ucr) == ("agent_limit", 200_000)  # per day: 2 - 1.8
    s.when(charge("email", 600, agent="other", run="r4"))  # another agent is not limited
    s.when(charge("email", 600))  # nor is unattributed work
    # The next day resets the day, not the month (1.8 spent).
    s.at(datetime(2026, 11, 2, 0, 0, tzinfo=UTC))
    s.when(charge("email", 600, agent="bot", run="r5"))  # month 2.4
    refused = s.refused(charge("email", 700, agent="bot", run="r6"), PaymentRequired)
    assert (refused.reason, refused.remaining_ucr) == ("agent_limit", 600_000)  # per month: 3 - 2.4
    s.when(charge("email", 600, agent="bot", run="r6"))  # exactly 3.0
    # The next month resets it.
    s.at(datetime(2026, 12, 1, 0, 0, tzinfo=UTC))
    s.when(charge("email", 600, agent="bot", run="r7"))


def test_member_limits() -> None:
    s = funded()
    s.when(c.SetLimit(account_id=ACCT, scope="member", subject="ann", per_day_ucr=C))
    s.when(charge("email", 600, member="ann"))
    refused = s.refused(charge("email", 600, member="ann", agent="bot"), PaymentRequired)
    assert (refused.reason, refused.remaining_ucr) == ("member_limit", 400_000)
    s.when(charge("email", 600, member="bob"))
    s.at(T0 + DAY)
    s.when(charge("email", 600, member="ann"))


# ---- coupons -----------------------------------------------------------------------------------


def test_coupon_rules() -> None:
    s = free_account()

    def rejected(code: str) -> str:
        return s.refused(c.RedeemCoupon(account_id=ACCT, code=code), CouponRejected).reason

    assert rejected("NOPE") == "unknown"
    assert rejected("EXPIRED2025") == "expired"
    applied = only(s.when(c.RedeemCoupon(account_id=ACCT, code="WELCOME10")), CouponApplied)
    assert (applied.code, applied.amount_ucr, applied.expires_at) == ("WELCOME10", 10 * C, T0 + timedelta(days=30))
    assert s.state.grants[applied.grant_id].source == "promotion"
    assert rejected("WELCOME10") == "already_redeemed"
    s.coupon_stock["LAUNCH50"] = 0
    assert rejected("LAUNCH50") == "used_up"
    s.coupon_stock["LAUNCH50"] = 1
    launch = only(s.when(c.RedeemCoupon(account_id=ACCT, code="LAUNCH50")), CouponApplied)
    assert (launch.amount_ucr, launch.expires_at) == (50 * C, None)
    assert s.state.balance_ucr == 65 * C
    late = Scenario(account_id="acct-2", now=datetime(2027, 7, 1, tzinfo=UTC))
    late.given(open_cmd(account_id="acct-2"))
    assert late.refused(c.RedeemCoupon(account_id="acct-2", code="LAUNCH50"), CouponRejected).reason == "expired"
    assert CouponRejected.status == 422


def test_coupon_codes_ignore_case_and_one_redemption_per_account() -> None:
    s = free_account()
    s.coupon_stock["WELCOME10"] = 2
    applied = only(s.when(c.RedeemCoupon(account_id=ACCT, code="welcome10")), CouponApplied)
    assert (applied.code, applied.amount_ucr) == ("WELCOME10", 10 * C)  # recorded under the card's spelling
    for again in ("WELCOME10", " Welcome10 ", "welcome10"):
        assert s.refused(c.RedeemCoupon(account_id=ACCT, code=again), CouponRejected).reason == "already_redeemed"
    # The stock is the card code's, whatever the spelling redeemed.
    s.coupon_stock["LAUNCH50"] = 0
    assert s.refused(c.RedeemCoupon(account_id=ACCT, code="launch50"), CouponRejected).reason == "used_up"


def test_a_redemption_recorded_under_another_spelling_still_counts() -> None:
    s = free_account()
    s.given_events(s.event(CouponApplied, 10 * C, grant_id=s.ids(), code="Welcome10"))
    assert s.refused(c.RedeemCoupon(account_id=ACCT, code="WELCOME10"), CouponRejected).reason == "already_redeemed"


# ---- reservations ------------------------------------------------------------------------------


def test_reserve_holds_available_not_balance_and_settle_charges_what_was_used() -> None:
    s = funded()  # 15 credits
    # 60 minutes of H100 at 0.0665 = 3.99 credits.
    reserved = only(s.when(c.Reserve(account_id=ACCT, operation="training_h100_per_minute", quantity=60)),
                    CreditsReserved)
    assert (reserved.held_ucr, reserved.amount_ucr, reserved.balance_after_ucr) == (3_990_000, 0, 15 * C)
    assert reserved.expires_at == T0 + HOUR  # default ttl
    assert (s.state.balance_ucr, s.state.reserved_ucr, s.state.available_ucr) == (15 * C, 3_990_000, 11_010_000)
    # Gated on what is available.
    refused = s.refused(c.Reserve(account_id=ACCT, operation="email", amount_ucr=11_010_001), PaymentRequired)
    assert refused.remaining_ucr == 11_010_000
    s.refused(charge("image_generate", 276), PaymentRequired)  # 11.04 > 11.01 available
    s.when(charge("image_generate", 275))  # 11.00
    assert s.state.available_ucr == 10_000
    # The job used 30 minutes: 1.995 credits; the rest of the hold is released.
    events = s.when(c.Settle(account_id=ACCT, reservation_id=reserved.reservation_id, quantity=30))
    assert types(events) == ["CreditsReleased", "UsageMetered"]
    released, used = events
    assert isinstance(released, CreditsReleased) and isinstance(used, UsageMetered)
    assert (released.released_ucr, released.reason, released.amount_ucr) == (1_995_000, "settled", 0)
    assert (used.cost_ucr, used.reservation_id) == (1_995_000, reserved.reservation_id)
    assert (s.state.reserved_ucr, s.state.balance_ucr) == (0, 15 * C - 11 * C - 1_995_000)
    s.refused(c.Settle(account_id=ACCT, reservation_id=reserved.reservation_id, quantity=1), InvalidState)
    s.refused(c.Release(account_id=ACCT, reservation_id=reserved.reservation_id), InvalidState)
    s.refused(c.Settle(account_id=ACCT, reservation_id=UUID(int=999), quantity=1), NotFound)


def test_settle_beyond_the_hold_is_metered_in_full() -> None:
    s = funded()
    r = only(s.when(c.Reserve(account_id=ACCT, operation="training_h100_per_minute", quantity=10)), CreditsReserved)
    assert r.held_ucr == 665_000
    events = s.when(c.Settle(account_id=ACCT, reservation_id=r.reservation_id, quantity=20))
    assert only(events, CreditsReleased).released_ucr == 0
    assert only(events, UsageMetered).cost_ucr == 1_330_000
    assert s.state.balance_ucr == 15 * C - 1_330_000


def test_release_and_expiry_of_reservations() -> None:
    s = funded()
    r = only(s.when(c.Reserve(account_id=ACCT, operation="email", amount_ucr=C)), CreditsReserved)
    released = only(s.when(c.Release(account_id=ACCT, reservation_id=r.reservation_id)), CreditsReleased)
    assert (released.released_ucr, released.reason, released.amount_ucr) == (C, "released", 0)
    assert (s.state.reserved_ucr, s.state.balance_ucr) == (0, 15 * C)
    r2 = only(s.when(c.Reserve(account_id=ACCT, operation="email", amount_ucr=2 * C, ttl_s=60)), CreditsReserved)
    s.advance(timedelta(seconds=59))
    assert s.when(c.ExpireReservations(account_id=ACCT)) == []
    s.advance(timedelta(seconds=1))
    expired = only(s.when(c.ExpireReservations(account_id=ACCT)), CreditsReleased)
    assert (expired.reservation_id, expired.released_ucr, expired.reason) == (r2.reservation_id, 2 * C, "expired")
    assert (s.state.reserved_ucr, s.state.available_ucr) == (0, 15 * C)
    assert s.when(c.ExpireReservations(account_id=ACCT)) == []
    s.refused(c.Settle(account_id=ACCT, reservation_id=r2.reservation_id, quantity=1), InvalidState)


def test_reserve_bad_input() -> None:
    s = funded()
    s.refused(c.Reserve(account_id=ACCT, operation="email", amount_ucr=C, quantity=5), InvalidRequest)
    s.refused(c.Reserve(account_id=ACCT, operation="gpt-9", amount_ucr=C), UnknownOperation)


# ---- refunds -----------------------------------------------------------------------------------


def test_refund_credit_adds_a_refund_grant() -> None:
    s = free_account()
    e = only(s.when(c.IssueRefund(account_id=ACCT, direction="credit", amount_ucr=2 * C, reason="failed run")),
             RefundIssued)
    assert (e.direction, e.amount_ucr, e.requested_ucr, e.capped) == ("credit", 2 * C, 2 * C, False)
    g = s.state.grants[e.grant_id]
    assert (g.source, g.remaining_ucr, g.expires_at) == ("refund", 2 * C, None)
    s.refused(c.IssueRefund(account_id=ACCT, direction="credit", reason="no amount"), InvalidRequest)


def test_clawback_is_capped_at_what_is_left_of_the_purchase() -> None:
    s = funded()  # signup 5 (promotion, expires) + starter 10 (purchase)
    bought = purchase_entry(s)
    p = bought.grant_id
    s.when(charge("email", 12_000))  # promotion 5, then 7 of the purchase
    assert s.state.grants[p].remaining_ucr == 3 * C
    e = only(s.when(c.IssueRefund(account_id=ACCT, direction="clawback", purchase_id=bought.event_id,
                                  reason="stripe refund")), RefundIssued)
    assert (e.direction, e.grant_id, e.purchase_id) == ("clawback", p, bought.event_id)
    assert (e.requested_ucr, e.amount_ucr, e.capped, e.forced) == (10 * C, -3 * C, True, False)
    assert s.state.grants[p].remaining_ucr == 0
    assert s.state.balance_ucr == 0
    again = only(s.when(c.IssueRefund(account_id=ACCT, direction="clawback", purchase_id=bought.event_id,
                                      reason="again")), RefundIssued)
    assert (again.amount_ucr, again.capped) == (0, True)


def test_partial_clawback_and_refusals() -> None:
    s = funded("builder")  # 50 + 5 bonus
    bought = purchase_entry(s)
    e = only(s.when(c.IssueRefund(account_id=ACCT, direction="clawback", purchase_id=bought.event_id,
                                  amount_ucr=20 * C, reason="partial")), RefundIssued)
    assert (e.amount_ucr, e.requested_ucr, e.capped) == (-20 * C, 20 * C, False)
    assert s.state.grants[bought.grant_id].remaining_ucr == 35 * C
    signup = next(e for e in s.history if isinstance(e, CreditsGranted)).event_id
    s.refused(c.IssueRefund(account_id=ACCT, direction="clawback", purchase_id=signup, reason="x"), NotFound)
    s.refused(c.IssueRefund(account_id=ACCT, direction="clawback", purchase_id=UUID(int=12345), reason="x"),
              NotFound)
    s.refused(c.IssueRefund(account_id=ACCT, direction="clawback", reason="x"), InvalidRequest)


# Refunds of purchased credits: ``purchase_id`` is the purchase's ledger entry id, and the rate
# card's refund window (``refund_window_days``) closes them unless an operator forces one.

WINDOW = timedelta(days=CARD.refund_window_days)


def clawback(purchase_id: UUID, amount_ucr: int | None = None, *, force: bool = False) -> c.IssueRefund:
    return c.IssueRefund(account_id=ACCT, direction="clawback", purchase_id=purchase_id, amount_ucr=amount_ucr,
                         reason="refunded in Stripe", force=force)


def test_the_sample_card_promises_a_30_day_refund_window() -> None:
    assert sample_rate_card().refund_window_days == 30  # Lux: unused purchased credits refundable within 30 days


def test_refund_inside_the_window_takes_back_the_unused_purchase() -> None:
    s = funded()
    bought = purchase_entry(s)
    s.advance(WINDOW)  # the window's last instant still counts
    e = only(s.when(clawback(bought.event_id)), RefundIssued)
    assert (e.purchase_id, e.grant_id, e.amount_ucr, e.capped, e.forced) == (
        bought.event_id, bought.grant_id, -bought.amount_ucr, False, False)
    assert s.state.grants[bought.grant_id].remaining_ucr == 0


def test_refund_outside_the_window_is_refused_unless_forced() -> None:
    s = funded()
    bought = purchase_entry(s)
    s.advance(WINDOW + timedelta(microseconds=1))
    refused = s.refused(clawback(bought.event_id), RefundRejected)
    assert (refused.status, refused.reason) == (422, "refund_window_closed")
    assert "30-day refund window" in refused.detail and "force" in refused.detail
    forced = only(s.when(clawback(bought.event_id, force=True)), RefundIssued)
    assert (forced.amount_ucr, forced.forced) == (-bought.amount_ucr, True)  # the event says it was forced


def test_a_refund_after_credits_were_burned_is_capped_and_says_so() -> None:
    s = funded("builder")  # signup 5 (promotion) + the builder pack
    bought = purchase_entry(s)
    s.when(charge("email", 15_000))  # 15 credits: the 5 signup credits first, then 10 of the purchase
    left = bought.amount_ucr - 10 * C
    e = only(s.when(clawback(bought.event_id, bought.amount_ucr)), RefundIssued)
    assert (e.requested_ucr, e.amount_ucr, e.capped) == (bought.amount_ucr, -left, True)
    assert s.state.grants[bought.grant_id].remaining_ucr == 0


def test_a_refund_names_a_purchase_entry_not_a_grant() -> None:
    s = funded()
    bought = purchase_entry(s)
    assert bought.grant_id != bought.event_id
    # The purchase's grant id is not its ledger entry: refused, as an unknown purchase is.
    for wrong in (bought.grant_id, UUID(int=999_999), s.history[0].event_id):  # grant, unknown, AccountOpened
        refused = s.refused(clawback(wrong), NotFound)
        assert "ledger entry" in refused.detail
    s.refused(c.IssueRefund(account_id=ACCT, direction="credit", amount_ucr=C, purchase_id=bought.grant_id,
                            reason="x"), NotFound)
    s.refused(c.IssueRefund(account_id=ACCT, direction="credit", amount_ucr=C, reason="x", force=True),
              InvalidRequest)


# ---- allowance reset ---------------------------------------------------------------------------


def test_allowance_resets_each_cycle_without_rolling_over() -> None:
    s = Scenario().given(open_cmd("pro"))  # signup 5 + allowance 25, both end 2026-12-01 09:00
    first = grant_of(s, AllowanceGranted)
    e = only(s.when(charge("email", 8000)), UsageMetered)
    # Same expiry: the promotion burns before the allowance.
    assert [(d.source, d.amount_ucr) for d in e.draws] == [("promotion", 5 * C), ("allowance", 3 * C)]
    s.refused(c.GrantAllowance(account_id=ACCT, cycle=1), InvalidState)  # not yet
    s.refused(c.GrantAllowance(account_id=ACCT, cycle=0), InvalidState)  # already
    s.at(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    events = s.when(c.GrantAllowance(account_id=ACCT, cycle=1))
    assert types(events) == ["GrantExpired", "AllowanceGranted"]
    expired, granted = events
    assert isinstance(expired, GrantExpired) and isinstance(granted, AllowanceGranted)
    assert (expired.grant_id, expired.expired_ucr) == (first, 22 * C)
    assert (granted.cycle, granted.amount_ucr) == (1, 25 * C)
    assert granted.expires_at == datetime(2027, 1, 1, 9, 0, tzinfo=UTC)
    assert s.state.balance_ucr == 25 * C
    s.refused(c.GrantAllowance(account_id=ACCT, cycle=1), InvalidState)  # duplicate
    s.refused(c.GrantAllowance(account_id=ACCT, cycle=2), InvalidState)  # not its month
    # Metered past the allowance: the next allowance pays the debt first.
    s.when(meter("email", 30_000))
    assert s.state.debt_ucr == 5 * C
    s.at(datetime(2027, 1, 1, 9, 0, tzinfo=UTC))
    events = s.when(c.GrantAllowance(account_id=ACCT, cycle=2))
    assert types(events) == ["AllowanceGranted", "DebtSettled"]  # nothing left to expire
    assert only(events, DebtSettled).settled_ucr == 5 * C
    assert (s.state.balance_ucr, s.state.debt_ucr, s.state.status) == (20 * C, 0, "active")


# ---- deployments -------------------------------------------------------------------------------


def dep(cmd: type[Any], **fields: Any) -> Any:
    return cmd(account_id=ACCT, deployment_id="d1", **fields)


def test_deployment_hours() -> None:
    s = free_account()  # 5 credits; gpu-s is 0.80 an hour
    events = s.when(dep(c.StartDeployment, instance_type="gpu-s"))
    assert types(events) == ["DeploymentStarted", "UsageMetered"]
    started, hour0 = events
    assert isinstance(started, DeploymentStarted) and isinstance(hour0, UsageMetered)
    assert (started.hourly_ucr, started.amount_ucr) == (800_000, 0)
    assert (hour0.hour_index, hour0.deployment_id, hour0.cost_ucr, hour0.gated) == (0, "d1", 800_000, True)
    assert hour0.occurred_at == T0
    s.at(T0 + HOUR - timedelta(seconds=1))
    s.refused(dep(c.ChargeDeploymentHour, hour_index=1), InvalidState)  # not due
    s.at(T0 + HOUR)
    hour1 = only(s.when(dep(c.ChargeDeploymentHour, hour_index=1)), UsageMetered)
    assert (hour1.hour_index, hour1.occurred_at, hour1.amount_ucr) == (1, T0 + HOUR, -800_000)
    s.refused(dep(c.ChargeDeploymentHour, hour_index=1), InvalidState)  # already charged
    s.refused(dep(c.ChargeDeploymentHour, hour_index=3), InvalidState)  # hour 2 first
    # Catching up after downtime: each hour is charged at (and dated) its own start.
    s.at(T0 + 5 * HOUR + timedelta(minutes=10))
    for n in (2, 3, 4, 5):
        assert only(s.when(dep(c.ChargeDeploymentHour, hour_index=n)), UsageMetered).occurred_at == T0 + n * HOUR
    assert s.state.balance_ucr == 200_000
    assert s.state.deployments["d1"].hours_charged == 6
    # Hour 6 can't be paid: refused, or the deployment pauses with the reason.
    s.at(T0 + 6 * HOUR)
    refused = s.refused(dep(c.ChargeDeploymentHour, hour_index=6, pause_if_unpaid=False), PaymentRequired)
    assert (refused.required_ucr, refused.remaining_ucr) == (800_000, 200_000)
    paused = only(s.when(dep(c.ChargeDeploymentHour, hour_index=6)), DeploymentPaused)
    assert (paused.reason, paused.amount_ucr) == ("insufficient_balance", 0)
    assert s.state.deployments["d1"].status == "paused"
    s.refused(dep(c.ChargeDeploymentHour, hour_index=6), InvalidState)
    s.refused(dep(c.ResumeDeployment), PaymentRequired)
    # Credits arrive; resume starts a new (charged) hour and a new clock.
    s.when(purchase())
    s.at(T0 + 8 * HOUR)
    events = s.when(dep(c.ResumeDeployment))
    assert types(events) == ["DeploymentResumed", "UsageMetered"]
    assert only(events, UsageMetered).hour_index == 6
    assert only(events, UsageMetered).occurred_at == T0 + 8 * HOUR
    s.at(T0 + 8 * HOUR + timedelta(minutes=59))
    s.refused(dep(c.ChargeDeploymentHour, hour_index=7), InvalidState)
    s.at(T0 + 9 * HOUR)
    assert only(s.when(dep(c.ChargeDeploymentHour, hour_index=7)), UsageMetered).occurred_at == T0 + 9 * HOUR
    assert s.state.deployments["d1"].credits_ucr == 8 * 800_000


def test_deployment_pause_resume_stop() -> None:
    s = funded()
    s.when(dep(c.StartDeployment, instance_type="cpu-s"))  # 0.05 an hour
    paused = only(s.when(dep(c.PauseDeployment)), DeploymentPaused)
    assert paused.reason == "paused_by_user"
    s.refused(dep(c.PauseDeployment), InvalidState)
    s.at(T0 + 3 * HOUR)
    s.refused(dep(c.ChargeDeploymentHour, hour_index=1), InvalidState)  # paused: no hours
    assert types(s.when(dep(c.ResumeDeployment))) == ["DeploymentResumed"]  # hour 0 is still unused
    s.refused(dep(c.ResumeDeployment), InvalidState)
    stopped = only(s.when(dep(c.StopDeployment)), DeploymentStopped)
    assert stopped.amount_ucr == 0
    for cmd in (dep(c.ResumeDeployment), dep(c.StopDeployment), dep(c.PauseDeployment),
                dep(c.StartDeployment, instance_type="cpu-s"), dep(c.ChargeDeploymentHour, hour_index=2)):
        s.refused(cmd, InvalidState)
    assert s.state.balance_ucr == 15 * C - 50_000


def test_deployment_refusals() -> None:
    s = free_account()
    s.refused(dep(c.StartDeployment, instance_type="email"), InvalidRequest)  # not an instance type
    s.refused(dep(c.StartDeployment, instance_type="tpu-x"), UnknownOperation)
    s.refused(dep(c.ChargeDeploymentHour, hour_index=0), NotFound)
    s.refused(dep(c.StopDeployment), NotFound)
    s.when(charge("email", 4500))  # 0.5 left
    refused = s.refused(dep(c.StartDeployment, instance_type="gpu-s"), PaymentRequired)
    assert (refused.required_ucr, refused.remaining_ucr, refused.reason) == (800_000, 500_000,
                                                                             "insufficient_balance")
    assert s.state.deployments == {}


def hours(s: Scenario) -> list[int]:
    """The hour indexes charged to deployment d1 so far, in order."""
    return [e.hour_index for e in s.history if isinstance(e, UsageMetered) and e.hour_index is not None]


def test_resume_a_minute_after_pausing_charges_nothing() -> None:
    """An hour paid stays paid: pausing after a minute and resuming a minute later costs nothing."""
    s = free_account()  # 5 credits; gpu-s is 0.80 an hour
    s.when(dep(c.StartDeployment, instance_type="gpu-s"))
    s.advance(timedelta(minutes=1)).when(dep(c.PauseDeployment))
    events = s.advance(timedelta(minutes=1)).when(dep(c.ResumeDeployment))
    assert types(events) == ["DeploymentResumed"] and only(events, DeploymentResumed).amount_ucr == 0
    assert hours(s) == [0] and s.state.balance_ucr == 5 * C - 800_000
    # The clock stood still for the paused minute: hour 1 is due after 60 minutes of running.
    s.at(T0 + timedelta(minutes=60))
    s.refused(dep(c.ChargeDeploymentHour, hour_index=1), InvalidState)  # 59 minutes used
    s.at(T0 + timedelta(minutes=61))
    hour1 = only(s.when(dep(c.ChargeDeploymentHour, hour_index=1)), UsageMetered)
    assert (hour1.hour_index, hour1.occurred_at) == (1, T0 + timedelta(minutes=61))


def test_running_on_until_the_paid_time_is_used_charges_the_next_hour_once() -> None:
    s = funded()
    s.when(dep(c.StartDeployment, instance_type="gpu-s"))
    s.at(T0 + HOUR).when(dep(c.ChargeDeploymentHour, hour_index=1))
    s.at(T0 + 90 * MINUTE).when(dep(c.PauseDeployment))  # 1.5 of 2 hours used
    assert types(s.at(T0 + 2 * HOUR).when(dep(c.ResumeDeployment))) == ["DeploymentResumed"]
    s.at(T0 + 150 * MINUTE - timedelta(microseconds=1))
    s.refused(dep(c.ChargeDeploymentHour, hour_index=2), InvalidState)  # not due yet
    s.at(T0 + 150 * MINUTE)  # 2 hours used: hour 2 is due
    assert only(s.when(dep(c.ChargeDeploymentHour, hour_index=2)), UsageMetered).occurred_at == T0 + 150 * MINUTE
    s.refused(dep(c.ChargeDeploymentHour, hour_index=2), InvalidState)  # already charged
    s.at(T0 + 200 * MINUTE).refused(dep(c.ChargeDeploymentHour, hour_index=3), InvalidState)
    assert hours(s) == [0, 1, 2]
    assert s.state.deployments["d1"].credits_ucr == 3 * 800_000


def test_a_pause_across_an_hour_boundary_charges_nothing_while_paused() -> None:
    s = funded()
    s.when(dep(c.StartDeployment, instance_type="gpu-s"))
    s.at(T0 + 50 * MINUTE).when(dep(c.PauseDeployment))
    for later in (HOUR, 2 * HOUR, 5 * HOUR):  # what the scheduler would ask: the deployment is paused
        s.at(T0 + later).refused(dep(c.ChargeDeploymentHour, hour_index=1), InvalidState)
    assert types(s.at(T0 + 5 * HOUR).when(dep(c.ResumeDeployment))) == ["DeploymentResumed"]
    s.at(T0 + 5 * HOUR + 10 * MINUTE).when(dep(c.ChargeDeploymentHour, hour_index=1))  # 10 minutes later
    assert hours(s) == [0, 1]


def test_resume_after_an_unpaid_hour_paused_it_charges_that_hour_gated() -> None:
    s = free_account()  # 5 credits: six hours of gpu-s
    s.when(dep(c.StartDeployment, instance_type="gpu-s"))
    s.at(T0 + 30 * MINUTE).when(dep(c.PauseDeployment))
    s.at(T0 + HOUR).when(dep(c.ResumeDeployment))
    s.when(charge("email", 3700))  # 0.5 credits left
    # Hour 1 falls due at 1:30 and cannot be paid when the scheduler comes by at 1:40: it pauses the
    # deployment (70 minutes used of 60 paid), and a refused hour stays unpaid while paused.
    paused = only(s.at(T0 + 100 * MINUTE).when(dep(c.ChargeDeploymentHour, hour_index=1)), DeploymentPaused)
    assert paused.reason == "insufficient_balance"
    refused = s.at(T0 + 2 * HOUR).refused(dep(c.ResumeDeployment), PaymentRequired)
    assert (refused.required_ucr, refused.reason) == (800_000, "insufficient_balance")
    s.when(purchase())
    events = s.when(dep(c.ResumeDeployment))
    assert types(events) == ["DeploymentResumed", "UsageMetered"]
    assert (only(events, UsageMetered).hour_index, only(events, UsageMetered).occurred_at) == (1, T0 + 2 * HOUR)
    # Hour 2 falls due when two hours are used: 50 minutes after this resume.
    s.at(T0 + 170 * MINUTE - timedelta(seconds=1)).refused(dep(c.ChargeDeploymentHour, hour_index=2), InvalidState)
    s.at(T0 + 170 * MINUTE).when(dep(c.ChargeDeploymentHour, hour_index=2))
    assert hours(s) == [0, 1, 2]


def test_stopping_a_deployment_paused_for_an_unpaid_hour_charges_nothing() -> None:
    s = free_account()
    s.when(dep(c.StartDeployment, instance_type="gpu-s"))
    s.when(charge("email", 4200))  # 0 credits left after hour 0
    s.at(T0 + HOUR + timedelta(seconds=10))
    assert types(s.when(dep(c.ChargeDeploymentHour, hour_index=1))) == ["DeploymentPaused"]
    assert types(s.at(T0 + 3 * HOUR).when(dep(c.StopDeployment))) == ["DeploymentStopped"]
    assert hours(s) == [0] and s.state.debt_ucr == 0


# ---- hours the scheduler missed: charged when the clock stops ------------------------------------


def missed_hours(s: Scenario) -> Scenario:
    """gpu-s (0.80 an hour) started at T0, hour 1 charged at 1:00, then the scheduler is down while
    it runs another 3 h 20 min: hours 2, 3 and 4 (due at 2:00, 3:00, 4:00) are unpaid at 4:20."""
    s.when(dep(c.StartDeployment, instance_type="gpu-s"))
    s.at(T0 + HOUR).when(dep(c.ChargeDeploymentHour, hour_index=1))
    return s.at(T0 + 4 * HOUR + 20 * MINUTE)


def test_stop_charges_the_hours_the_scheduler_missed() -> None:
    s = missed_hours(funded())  # 15 credits
    events = s.when(dep(c.StopDeployment, idempotency_key="stop-d1"))
    assert types(events) == ["UsageMetered"] * 3 + ["DeploymentStopped"]
    charged = [e for e in events if isinstance(e, UsageMetered)]
    # Each hour with its own index, dated when it fell due; metered: the running time was used.
    assert [(e.hour_index, e.occurred_at, e.gated, e.cost_ucr, e.debt_added_ucr) for e in charged] == [
        (n, T0 + n * HOUR, False, 800_000, 0) for n in (2, 3, 4)]
    assert hours(s) == [0, 1, 2, 3, 4]
    d = s.state.deployments["d1"]
    assert (d.status, d.hours_charged, d.used, d.credits_ucr) == ("stopped", 5, 4 * HOUR + 20 * MINUTE, 5 * 800_000)
    # The scheduler, back, finds nothing to charge: the deployment is stopped.
    for n in (2, 3, 4, 5):
        s.refused(dep(c.ChargeDeploymentHour, hour_index=n), InvalidState)
    assert s.state.balance_ucr == 15 * C - 5 * 800_000


@pytest.mark.parametrize("before_stop", [0, 1, 2, 3])
def test_a_scheduler_tick_racing_the_stop_charges_each_hour_once(before_stop: int) -> None:
    """A tick found hours 2, 3 and 4 due; ``before_stop`` of its charges commit before the stop, the
    rest after it: in every order each hour index is charged exactly once."""
    s = missed_hours(funded())
    tick = [dep(c.ChargeDeploymentHour, hour_index=n, idempotency_key=f"deployment:d1:hour:{n}") for n in (2, 3, 4)]
    for cmd in tick[:before_stop]:
        assert only(s.when(cmd), UsageMetered).hour_index == cmd.hour_index
    stop = s.when(dep(c.StopDeployment))
    assert [e.hour_index for e in stop if isinstance(e, UsageMetered)] == [2, 3, 4][before_stop:]
    for cmd in tick[before_stop:]:
        s.refused(cmd, InvalidState)
    assert hours(s) == [0, 1, 2, 3, 4]
    assert s.state.deployments["d1"].credits_ucr == 5 * 800_000


def test_stop_with_no_credits_left_still_stops_and_the_missed_hours_become_debt() -> None:
    s = free_account()  # 5 credits
    s.when(dep(c.StartDeployment, instance_type="gpu-s"))
    s.at(T0 + HOUR).when(dep(c.ChargeDeploymentHour, hour_index=1))
    s.when(charge("email", 3400))  # 3.40 credits: nothing left
    s.when(c.SetBudget(account_id=ACCT, monthly_limit_ucr=5 * C, hard_stop=True))  # used up as well
    s.at(T0 + 4 * HOUR + 20 * MINUTE)
    s.refused(dep(c.ChargeDeploymentHour, hour_index=2, pause_if_unpaid=False), PaymentRequired)  # gated
    events = s.when(dep(c.StopDeployment))
    assert types(events) == ["UsageMetered"] * 3 + ["DeploymentStopped"]
    assert [(e.hour_index, e.debt_added_ucr) for e in events if isinstance(e, UsageMetered)] == [
        (2, 800_000), (3, 800_000), (4, 800_000)]
    assert (s.state.debt_ucr, s.state.balance_ucr, s.state.status) == (3 * 800_000, -3 * 800_000, "in_debt")
    assert s.state.deployments["d1"].status == "stopped"


def test_stop_within_the_paid_time_charges_nothing() -> None:
    """Running time, not wall time: paused from 1:30 to 3:00, hour 2 falls due at 3:30 (2 h used)."""
    for stop_at, charged in ((T0 + 210 * MINUTE - timedelta(microseconds=1), [0, 1]),
                             (T0 + 210 * MINUTE, [0, 1, 2])):  # due at its mark, as a tick then would
        s = funded()
        s.when(dep(c.StartDeployment, instance_type="gpu-s"))
        s.at(T0 + HOUR).when(dep(c.ChargeDeploymentHour, hour_index=1))
        s.at(T0 + 90 * MINUTE).when(dep(c.PauseDeployment))
        s.at(T0 + 3 * HOUR).when(dep(c.ResumeDeployment))
        events = s.at(stop_at).when(dep(c.StopDeployment))
        assert types(events)[-1] == "DeploymentStopped"
        assert hours(s) == charged


def test_pause_charges_the_hours_the_scheduler_missed_and_resume_then_charges_nothing() -> None:
    s = missed_hours(funded())
    events = s.when(dep(c.PauseDeployment))
    assert types(events) == ["UsageMetered"] * 3 + ["DeploymentPaused"]
    assert hours(s) == [0, 1, 2, 3, 4]
    for n in (2, 3, 4, 5):  # late or racing scheduler charges: paused, or already charged
        s.refused(dep(c.ChargeDeploymentHour, hour_index=n), InvalidState)
    # 4 h 20 min used of 5 h paid: resuming charges nothing; hour 5 is due 40 minutes of running later.
    assert types(s.at(T0 + 6 * HOUR).when(dep(c.ResumeDeployment))) == ["DeploymentResumed"]
    for n in (2, 3, 4):
        s.refused(dep(c.ChargeDeploymentHour, hour_index=n), InvalidState)
    s.at(T0 + 400 * MINUTE - timedelta(microseconds=1)).refused(dep(c.ChargeDeploymentHour, hour_index=5), InvalidState)
    s.at(T0 + 400 * MINUTE).when(dep(c.ChargeDeploymentHour, hour_index=5))
    assert hours(s) == [0, 1, 2, 3, 4, 5]


def test_a_pause_for_debt_charges_the_hours_the_scheduler_missed() -> None:
    s = missed_hours(free_account())  # 3.40 credits left after hours 0 and 1
    s.when(meter("email", 4000))  # 0.60 of debt
    events = s.when(c.PauseForDebt(account_id=ACCT))
    assert types(events) == ["UsageMetered"] * 3 + ["DeploymentPaused"]
    assert hours(s) == [0, 1, 2, 3, 4]
    assert s.state.debt_ucr == 600_000 + 3 * 800_000


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 150), st.sampled_from(["pause", "resume", "tick", "tick"])),
                      max_size=30))
def test_hours_charged_follow_the_running_time_used(steps: list[tuple[int, str]]) -> None:
    """Whatever the pauses, a scheduler that charges every due hour has charged hour n exactly
    once when n hours of running time are used: hours == used // 1 h + 1 while it runs, never more."""
    s = Scenario().given(open_cmd("free"), grant(10_000 * C, "purchase"))
    s.when(dep(c.StartDeployment, instance_type="gpu-s"))

    def tick() -> None:
        d = s.state.deployments["d1"]
        while d.status == "running" and d.used_at(s.now) >= d.paid:
            s.when(dep(c.ChargeDeploymentHour, hour_index=d.hours_charged))
            d = s.state.deployments["d1"]

    for minutes, action in steps:
        s.advance(timedelta(minutes=minutes))
        d = s.state.deployments["d1"]
        if action == "pause" and d.status == "running":
            tick()  # the scheduler may or may not have come by first: both are covered by "tick"
            s.when(dep(c.PauseDeployment))
        elif action == "resume" and d.status == "paused":
            s.when(dep(c.ResumeDeployment))
        elif action == "tick":
            tick()
        d = s.state.deployments["d1"]
        if d.status == "running":
            assert d.hours_charged <= d.used_at(s.now) // HOUR + 1
            tick()
            assert s.state.deployments["d1"].hours_charged == d.used_at(s.now) // HOUR + 1
    assert hours(s) == list(range(s.state.deployments["d1"].hours_charged))


def test_a_balance_beyond_max_ucr_is_refused() -> None:
    """Balances stay within ±MAX_UCR (2^62 µcr): refused as bad input, never a BIGINT overflow."""
    s = free_account()  # 5 credits
    s.when(grant(MAX_UCR - 5 * C, "purchase"))
    assert s.state.balance_ucr == MAX_UCR
    s.refused(grant(1, "purchase"), InvalidRequest)
    s.refused(grant(MAX_UCR, "purchase"), InvalidRequest)


def near_the_spend_bound(s: Scenario, room: int, *keys: tuple[str, str, str]) -> Scenario:
    """``s`` with ``keys`` (spend counters, as the store loads them) ``room`` µcr below MAX_SPEND_UCR,
    and what the account ever spent at least that much (each counter is a part of it)."""
    s.state = replace(s.state, counters={**s.state.loaded_counters(), **{k: MAX_SPEND_UCR - room for k in keys}},
                      spent_ucr=max(s.state.spent_ucr, MAX_SPEND_UCR - room))
    return s


@pytest.mark.parametrize("key", [("account", "", "M2026-11"), ("account", "", "D2026-11-01"),
                                 ("agent", "bot", "M2026-11"), ("member", "ann", "D2026-11-01"),
                                 ("agent", "bot", "Rr1")])
def test_a_debit_may_fill_a_spend_counter_to_the_bound_and_not_past_it(key: tuple[str, str, str]) -> None:
    """Every counter a debit adds to stays <= MAX_SPEND_UCR: the bound is accepted, bound + 1 refused."""
    who = Attribution(agent="bot", member="ann", run="r1")
    s = near_the_spend_bound(funded(), 3000, key)  # email: 1,000 µcr a message
    before = s.state
    refused = s.refused(c.Meter(account_id=ACCT, operation="email", quantity=4, attribution=who), OutOfRange)
    assert (refused.status, refused.type_slug) == (422, "out-of-range")
    s.refused(charge("email", 4, agent="bot", member="ann", run="r1"), OutOfRange)
    s.when(c.Meter(account_id=ACCT, operation="email", quantity=3, attribution=who))
    assert s.state.counter(key) == MAX_SPEND_UCR
    s.refused(c.Meter(account_id=ACCT, operation="email", quantity=1, attribution=who), OutOfRange)
    assert s.state.balance_ucr == before.balance_ucr - 3000


def test_a_backdated_meter_is_bounded_by_the_counters_of_when_it_happened() -> None:
    s = near_the_spend_bound(funded(), 0, ("account", "", "M2026-10"))
    october = datetime(2026, 10, 31, tzinfo=UTC)
    s.refused(c.Meter(account_id=ACCT, operation="email", quantity=1, occurred_at=october), OutOfRange)
    s.when(meter("email", 1))  # November's counters have room


def test_a_deployment_total_is_bounded_too() -> None:
    s = funded()
    s.when(dep(c.StartDeployment, instance_type="cpu-s"))  # 0.05 an hour
    d = s.state.deployments["d1"]
    s.state = replace(s.state, deployments={"d1": replace(d, credits_ucr=MAX_SPEND_UCR - 50_000)})
    s.at(T0 + HOUR).when(dep(c.ChargeDeploymentHour, hour_index=1))  # exactly at the bound
    assert s.state.deployments["d1"].credits_ucr == MAX_SPEND_UCR
    s.at(T0 + 2 * HOUR).refused(dep(c.ChargeDeploymentHour, hour_index=2), OutOfRange)


@settings(max_examples=200, deadline=None)
@given(room=st.integers(0, 10**7), messages=st.integers(1, 10**4))
def test_spend_counters_never_pass_the_bound(room: int, messages: int) -> None:
    month, day = ("account", "", "M2026-11"), ("account", "", "D2026-11-01")
    s = near_the_spend_bound(Scenario().given(open_cmd("free")), room, month)
    cost = 1000 * messages
    if cost <= room:
        s.when(meter("email", messages))
        assert s.state.counter(month) == MAX_SPEND_UCR - room + cost <= MAX_SPEND_UCR
        assert s.state.counter(day) == cost
    else:
        s.refused(meter("email", messages), OutOfRange)


def test_far_below_the_bound_a_debit_reads_no_spend_counter() -> None:
    """What the account ever spent bounds every counter: with room under it, counters the store
    did not load are never asked for, and the debit adds to what was spent."""
    s = funded()
    s.state = replace(s.state, counters=None, spent_ucr=MAX_SPEND_UCR - 1000)
    s.when(meter("email", 1))  # 1,000 µcr: exactly to the bound
    assert s.state.counters is None and s.state.spent_ucr == MAX_SPEND_UCR


def test_near_the_bound_a_debit_asks_for_its_counters() -> None:
    s = funded()
    s.state = replace(s.state, counters=None, spent_ucr=MAX_SPEND_UCR - 999)
    with pytest.raises(CountersNotLoaded) as asked:
        s.when(meter("email", 1))
    assert asked.value.account_id == ACCT


def test_what_was_spent_in_other_periods_does_not_refuse_a_debit() -> None:
    """Past the bound in all, a debit is still decided on its own counters, exactly."""
    s = funded()
    s.state = replace(s.state, spent_ucr=MAX_UCR)  # counters loaded: this month's are empty
    s.when(meter("email", 1))
    assert s.state.counter(("account", "", "M2026-11")) == 1000 and s.state.spent_ucr == MAX_UCR


def test_what_was_spent_is_held_at_max_ucr() -> None:
    s = funded()
    s.state = replace(s.state, spent_ucr=MAX_UCR - 10)
    s.when(meter("email", 1))
    assert s.state.spent_ucr == MAX_UCR


def test_the_largest_single_credit_is_accepted() -> None:
    s = Scenario().given(open_cmd("free"), meter("email", 5000))  # balance 0
    assert only(s.when(grant(MAX_UCR, "purchase")), CreditsGranted).balance_after_ucr == MAX_UCR


# ---- time, plans and bad input -----------------------------------------------------------------


def test_metered_usage_keeps_when_it_happened() -> None:
    s = funded()
    yesterday = T0 - DAY
    e = only(s.when(c.Meter(account_id=ACCT, operation="email", quantity=1000, occurred_at=yesterday)),
             UsageMetered)
    assert (e.occurred_at, e.recorded_at) == (yesterday, T0)
    # A little clock skew is tolerated; usage from the future is not.
    s.when(c.Meter(account_id=ACCT, operation="email", quantity=1, occurred_at=T0 + timedelta(minutes=5)))
    s.refused(c.Meter(account_id=ACCT, operation="email", quantity=1, occurred_at=T0 + timedelta(minutes=6)),
              InvalidRequest)


def test_usage_metered_last_month_does_not_count_against_this_months_budget() -> None:
    s = funded()
    s.when(c.SetBudget(account_id=ACCT, monthly_limit_ucr=C, hard_stop=True))
    s.when(c.Meter(account_id=ACCT, operation="email", quantity=900, occurred_at=datetime(2026, 10, 31, tzinfo=UTC)))
    s.when(charge("email", 1000))  # October's 0.9 is not November's
    assert s.refused(charge("email", 1), PaymentRequired).reason == "budget_hard_limit"


def test_grant_expiry_must_be_in_the_future() -> None:
    s = free_account()
    s.refused(grant(C, expires_at=T0), InvalidRequest)
    s.refused(grant(C, expires_at=T0 - timedelta(seconds=1)), InvalidRequest)
    e = only(s.when(grant(C, expires_at=T0 + timedelta(seconds=1))), CreditsGranted)
    assert e.expires_at == T0 + timedelta(seconds=1)


def test_plan_change_sets_the_next_allowance() -> None:
    s = free_account()
    s.refused(c.ChangePlan(account_id=ACCT, plan="free"), InvalidState)
    s.refused(c.ChangePlan(account_id=ACCT, plan="enterprise"), UnknownPlan)
    changed = s.when(c.ChangePlan(account_id=ACCT, plan="pro"))
    assert types(changed) == ["PlanChanged"] and changed[0].amount_ucr == 0
    assert s.state.plan == "pro"
    # The free plan granted no allowance for this cycle, so the pro one can be granted now.
    granted = only(s.when(c.GrantAllowance(account_id=ACCT, cycle=0)), AllowanceGranted)
    assert (granted.plan, granted.amount_ucr) == ("pro", 25 * C)
    s.refused(c.GrantAllowance(account_id=ACCT, cycle=0), InvalidState)
    s.when(c.ChangePlan(account_id=ACCT, plan="team"))
    s.at(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    assert only(s.when(c.GrantAllowance(account_id=ACCT, cycle=1)), AllowanceGranted).amount_ucr == 150 * C


def test_a_pack_paid_in_full_grants_its_credits_and_bonus() -> None:
    s = free_account()
    for pack in CARD.packs.values():
        e = only(s.when(purchase(pack.id)), CreditsPurchased)
        assert e.cents_paid == pack.price_cents
        credits, bonus = int(pack.credits * C), int(pack.bonus * C)  # whole µcr on the sample card
        assert (e.credits_ucr, e.bonus_ucr, e.amount_ucr) == (credits, bonus, credits + bonus)


def test_a_pack_not_paid_its_price_is_refused_and_records_nothing() -> None:
    s = free_account()
    pack = max(CARD.packs.values(), key=lambda p: p.credits)
    for paid in (10, 0, pack.price_cents - 1, pack.price_cents + 1):
        refused = s.refused(purchase(pack.id, paid), PurchaseRejected)
        assert (refused.status, refused.reason) == (422, "price_mismatch")
        assert str(pack.price_cents) in refused.detail
    # Credits named beside a pack must be what the card gives for it.
    s.refused(c.RecordPurchase(account_id=ACCT, kind="pack", pack_id=pack.id, cents_paid=pack.price_cents,
                               credits_ucr=int(pack.credits * C) + 1), PurchaseRejected)


def test_a_custom_amount_buys_what_the_rule_says_rounded_down() -> None:
    rule = CARD.custom_amount
    s = free_account()
    e = only(s.when(c.RecordPurchase(account_id=ACCT, kind="custom", cents_paid=rule.min_cents)), CreditsPurchased)
    assert e.amount_ucr * 100 == rule.credits_per_dollar * C * rule.min_cents  # exact on the sample card
    below = s.refused(c.RecordPurchase(account_id=ACCT, kind="custom", cents_paid=rule.min_cents - 1),
                      PurchaseRejected)
    assert below.reason == "amount_out_of_range"
    s.refused(c.RecordPurchase(account_id=ACCT, kind="custom", cents_paid=rule.max_cents + 1), PurchaseRejected)
    # A rate that does not divide evenly: the fraction of a µcr is never given.
    rule_odd = CustomAmount(min_cents=100, credits_per_dollar=Decimal("1.0000003"))
    odd = CARD.model_copy(update={"custom_amount": rule_odd})
    t = Scenario(card=odd).given(open_cmd("free"))
    bought = only(t.when(c.RecordPurchase(account_id=ACCT, kind="custom", cents_paid=1999)), CreditsPurchased)
    assert bought.credits_ucr == 19_990_005  # 19.990005997 credits
    t.refused(c.RecordPurchase(account_id=ACCT, kind="custom", cents_paid=1999, credits_ucr=19_990_006),
              PurchaseRejected)


def test_custom_amount_bounds_and_pack_prices() -> None:
    s = free_account()
    s.refused(c.RecordPurchase(account_id=ACCT, kind="custom", cents_paid=99), InvalidRequest)  # minimum $1
    s.refused(c.RecordPurchase(account_id=ACCT, kind="custom", cents_paid=10_000_001), InvalidRequest)
    one = only(s.when(c.RecordPurchase(account_id=ACCT, kind="custom", cents_paid=100)), CreditsPurchased)
    assert (one.credits_ucr, one.bonus_ucr, one.amount_ucr) == (C, 0, C)  # 1 credit per dollar
    odd = only(s.when(c.RecordPurchase(account_id=ACCT, kind="custom", cents_paid=1999)), CreditsPurchased)
    assert odd.amount_ucr == 19_990_000
    scale = only(s.when(purchase("scale", 20000)), CreditsPurchased)
    assert (scale.credits_ucr, scale.bonus_ucr, scale.amount_ucr) == (200 * C, 30 * C, 230 * C)
    s.refused(c.RecordPurchase(account_id=ACCT, kind="pack", cents_paid=1000), InvalidRequest)  # no pack_id
    s.refused(c.RecordPurchase(account_id=ACCT, kind="subscription", cents_paid=2000), InvalidRequest)
    sub = only(s.when(c.RecordPurchase(account_id=ACCT, kind="subscription", cents_paid=2000, credits_ucr=25 * C)),
               CreditsPurchased)
    assert (sub.kind, sub.amount_ucr) == ("subscription", 25 * C)


# ---- the balance chain over a long history -----------------------------------------------------


def test_every_balance_after_is_the_previous_plus_the_amount() -> None:
    s = Scenario().given(open_cmd("pro"))
    s.given(purchase("builder", 5000), charge("gpt-4o", 1234), meter("claude-haiku", 1001),
            c.RedeemCoupon(account_id=ACCT, code="WELCOME10"), meter("image_generate", 300))
    r = only(s.when(c.Reserve(account_id=ACCT, operation="email", amount_ucr=C)), CreditsReserved)
    s.given(purchase("scale", 20000), c.Settle(account_id=ACCT, reservation_id=r.reservation_id, quantity=300),
            dep(c.StartDeployment, instance_type="gpu-m"))
    s.at(datetime(2026, 12, 1, 9, 0, tzinfo=UTC)).given(c.GrantAllowance(account_id=ACCT, cycle=1),
                                                        c.IssueRefund(account_id=ACCT, direction="credit",
                                                                      amount_ucr=123, reason="x"))
    balance = 0
    for e in s.history:
        assert e.balance_after_ucr == balance + e.amount_ucr
        balance = e.balance_after_ucr
    assert balance == s.state.balance_ucr
    # Re-deriving from the events alone gives the same state.
    assert fold(AccountState(account_id=ACCT), s.history) == s.state


# ---- random histories --------------------------------------------------------------------------

commands = st.one_of(
    st.builds(charge, st.sampled_from(["email", "image_generate", "gpt-4o", "voice_minute"]), st.integers(1, 3000)),
    st.builds(meter, st.sampled_from(["email", "image_generate", "claude-haiku"]), st.integers(1, 3000)),
    st.builds(purchase, st.sampled_from(["starter", "builder"])),
    st.builds(grant, st.integers(1, 5 * C), st.sampled_from(["promotion", "refund", "purchase", "allowance"])),
    st.just(c.RedeemCoupon(account_id=ACCT, code="WELCOME10")),
    st.builds(lambda n: c.Reserve(account_id=ACCT, operation="training_h100_per_minute", quantity=n),
              st.integers(1, 120)),
    st.just(c.ExpireGrants(account_id=ACCT)),
    st.just(c.ExpireReservations(account_id=ACCT)),
    st.builds(lambda d: timedelta(days=d), st.integers(0, 40)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=st.sampled_from(["free", "pro", "team"]), steps=st.lists(commands, max_size=25))
def test_random_histories_keep_the_chain_and_the_gate(plan: str, steps: list[c.Command | timedelta]) -> None:
    s = Scenario().given(open_cmd(plan))
    for step in steps:
        if isinstance(step, timedelta):
            s.advance(step)
            continue
        before = s.state
        try:
            events = s.when(step)  # checks the chain and the fold
        except PaymentRequired as refused:
            assert isinstance(step, c.Charge | c.Reserve)
            assert refused.required_ucr > refused.remaining_ucr >= 0
            continue
        except CouponRejected:
            continue
        if isinstance(step, c.Charge | c.Reserve):
            assert s.state.available_ucr >= 0  # a gated command never overdraws
        assert s.state.reserved_ucr >= 0
        assert s.state.debt_ucr >= 0
        assert sum(e.amount_ucr for e in events) == s.state.balance_ucr - before.balance_ucr
    assert fold(AccountState(account_id=ACCT), s.history) == s.state


def test_a_reservation_is_held_to_the_agent_limit() -> None:
    s = funded("builder")
    s.when(c.SetLimit(account_id=ACCT, scope="agent", subject="bot", per_day_ucr=C))
    refused = s.refused(c.Reserve(account_id=ACCT, operation="email", amount_ucr=2 * C,
                                  attribution=Attribution(agent="bot")), PaymentRequired)
    assert (refused.reason, refused.remaining_ucr) == ("agent_limit", C)
    s.when(c.Reserve(account_id=ACCT, operation="email", amount_ucr=C, attribution=Attribution(agent="bot")))
