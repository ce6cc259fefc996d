"""The rate card: the shipped sample covers every seed product, prices worked out by hand, bad input refused.

The sample's own figures are checked against ``ledger/data/rates.toml`` (``SAMPLE``). Every other
price below is derived by hand from the test suite's frozen card, ``tests/data/rates.toml``
(``CARD``; 1 credit = 1,000,000 µcr; a charge is summed exactly and rounded up once, then floored
at the session minimum), so the pricing logic's tests keep their figures when the sample changes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from ledger.errors import InvalidQuantity, RateCardError, UnknownOperation, UnknownPack, UnknownPlan
from ledger.money import MAX_QUANTITY, UCR_PER_CREDIT
from ledger.rates import (
    RateCard,
    coupon_code,
    normalize_quantities,
    parse_rate_card,
    price,
    sample_rate_card,
)
from tests.cards import frozen_rate_card, frozen_rate_card_text

SAMPLE = sample_rate_card()
CARD = frozen_rate_card()
TEXT = frozen_rate_card_text()


def charge(slug: str, quantity: int | None = None, **quantities: int) -> int:
    """What the card charges, validated exactly the way a command is."""
    op = CARD.operation(slug)
    q = normalize_quantities(op, quantity, quantities or None)
    amount = price(CARD, slug, q).amount_ucr
    assert type(amount) is int
    return amount


# ---- the sample card: the seed products' own figures (1 credit = $0.01) --------------------


def test_sample_card_parses_with_a_version_and_upgrade_url() -> None:
    assert isinstance(SAMPLE, RateCard)
    assert SAMPLE.version == "2026-12-08"
    assert SAMPLE.currency == "USD"
    assert SAMPLE.upgrade_url.startswith("https://")
    assert SAMPLE.default_plan in SAMPLE.plans


@pytest.mark.parametrize(
    ("slug", "dimension", "credits", "per"),
    [
        ("gpt-4o", "input_tokens", "250", 1_000_000),  # LenserFight, per 1M tokens
        ("gpt-4o", "output_tokens", "1000", 1_000_000),
        ("gpt-4o-mini", "input_tokens", "15", 1_000_000),
        ("gpt-4o-mini", "output_tokens", "60", 1_000_000),
        ("claude-sonnet-4", "input_tokens", "300", 1_000_000),
        ("claude-sonnet-4", "output_tokens", "1500", 1_000_000),
        ("claude-haiku", "input_tokens", "0.025", 1_000),  # Lux, per 1K tokens
        ("claude-haiku", "output_tokens", "0.125", 1_000),
        ("email", "messages", "1", 1),
        ("sms", "messages", "2", 1),
        ("voice_minute", "seconds", "5", 60),  # 5 a minute, billed per second
        ("voice_synthesis_1k_chars", "characters", "1", 1_000),
        ("training_h100_per_minute", "minutes", "6.65", 1),  # Pictograph
        ("image_generate", "images", "4", 1),
        ("cpu-s", "hours", "5", 1),  # the GPU seed's instances
        ("gpu-s", "hours", "80", 1),
        ("gpu-m", "hours", "240", 1),
        ("gpu-l", "hours", "399", 1),
    ],
)
def test_sample_card_covers_every_seed_product(slug: str, dimension: str, credits: str, per: int) -> None:
    rate = SAMPLE.operation(slug).rates[dimension]
    assert rate.credits == Decimal(credits)
    assert isinstance(rate.credits, Decimal)  # exact, never a float
    assert rate.per == per


def test_instance_types_are_priced_per_hour() -> None:
    instances = {slug: op for slug, op in SAMPLE.operations.items() if op.kind == "instance"}
    assert set(instances) == {"cpu-s", "gpu-s", "gpu-m", "gpu-l"}
    for op in instances.values():
        assert op.unit == "hours"
        assert op.rates["hours"].per == 1


def test_sample_card_has_session_minimums() -> None:
    assert SAMPLE.operation("voice_minute").minimum == Decimal(5)  # one minute
    assert SAMPLE.operation("training_h100_per_minute").minimum == Decimal("66.5")  # ten minutes
    assert SAMPLE.operation("email").minimum == 0
    assert price(SAMPLE, "voice_minute", {"seconds": 7}).amount_ucr == 5 * UCR_PER_CREDIT
    assert price(SAMPLE, "voice_minute", {"seconds": 90}).amount_ucr == 7_500_000  # per second beyond it


def test_sample_card_packs_custom_amount_plans_and_coupons() -> None:
    # The GPU seed's packs: $5 -> 500 credits ... $100 -> 10,000, no bonus.
    gpu_packs = {p.id: (p.price_cents, p.credits, p.bonus)
                 for p in SAMPLE.packs.values() if p.id.startswith("credits-")}
    assert gpu_packs == {f"credits-{n}": (n, Decimal(n), Decimal(0)) for n in (500, 1000, 2500, 5000, 10000)}
    # LenserFight's, the larger ones with a bonus.
    assert {i: (SAMPLE.pack(i).price_cents, SAMPLE.pack(i).credits, SAMPLE.pack(i).bonus)
            for i in ("starter", "builder", "scale")} == {
        "starter": (1000, Decimal(1000), 0), "builder": (5000, Decimal(5000), Decimal(500)),
        "scale": (20000, Decimal(20000), Decimal(3000))}
    assert SAMPLE.custom_amount.min_cents == 100  # minimum $1
    assert SAMPLE.custom_amount.credits_per_dollar == Decimal(100)
    free = SAMPLE.plan("free")
    assert (free.price_cents, free.monthly_credits, free.signup_credits) == (0, Decimal(1000), Decimal(500))
    pro = SAMPLE.plan("pro")
    assert (pro.price_cents, pro.monthly_credits, pro.signup_credits) == (2000, Decimal(2500), Decimal(500))
    assert pro.signup_credits_expire_days == 30
    assert pro.rate_limit_per_minute == 600
    assert pro.concurrent_runs == 5
    team = SAMPLE.plan("team")
    assert (team.price_cents, team.monthly_credits, team.signup_credits) == (10000, Decimal(15000), Decimal(2000))
    assert SAMPLE.budget_defaults.warn_pct == 80
    assert SAMPLE.budget_defaults.critical_pct == 95
    assert SAMPLE.budget_defaults.low_balance == Decimal(500)
    welcome = SAMPLE.coupons["WELCOME10"]
    assert (welcome.credits, welcome.max_redemptions, welcome.grant_expires_days) == (Decimal(1000), 10000, 30)
    assert SAMPLE.coupons["LAUNCH50"].credits == Decimal(5000)
    assert SAMPLE.coupons["LAUNCH50"].expires_at == datetime(2027, 6, 30, 23, 59, 59, tzinfo=UTC)
    assert SAMPLE.coupons["EXPIRED2025"].expires_at is not None
    assert SAMPLE.refund_window_days == 30


def test_the_sample_keeps_every_name_the_frozen_test_card_has() -> None:
    """Docs, the demo and the tests name operations, packs, plans and coupons: the sample keeps them all."""
    assert set(CARD.operations) <= set(SAMPLE.operations)
    assert set(CARD.packs) <= set(SAMPLE.packs)
    assert set(CARD.plans) == set(SAMPLE.plans)
    assert set(CARD.coupons) == set(SAMPLE.coupons)


def test_unknown_pack_and_plan() -> None:
    with pytest.raises(UnknownPack):
        SAMPLE.pack("mega")
    with pytest.raises(UnknownPlan):
        SAMPLE.plan("enterprise")


# ---- prices worked out by hand ---------------------------------------------------------------


def test_gpt_4o_input_and_output_tokens() -> None:
    # 1,234 × 2.50 / 1M = 0.003085 credits = 3,085 µcr; 567 × 10.00 / 1M = 0.00567 = 5,670 µcr.
    assert charge("gpt-4o", input_tokens=1234, output_tokens=567) == 8_755
    # A bare quantity is the unit dimension (input tokens).
    assert charge("gpt-4o", 1234) == 3_085
    # A completion with no output still read its input: one dimension may be zero.
    assert charge("gpt-4o", input_tokens=1234, output_tokens=0) == 3_085


def test_claude_sonnet_4_per_million() -> None:
    # 1M input = 3 credits; 1 output token = 15 / 1M credits = 15 µcr.
    assert charge("claude-sonnet-4", input_tokens=1_000_000, output_tokens=1) == 3_000_015


def test_gpt_4o_mini_fraction_of_a_ucr_is_rounded_up() -> None:
    # 1 token × 0.15 / 1M credits = 0.15 µcr -> 1 µcr (never under-charge).
    assert charge("gpt-4o-mini", 1) == 1


def test_claude_haiku_per_1k_rounds_up() -> None:
    # 0.00025 credits per 1K tokens = 0.25 µcr per token.
    assert charge("claude-haiku", 1) == 1  # 0.25 -> 1
    assert charge("claude-haiku", 1000) == 250  # exact
    assert charge("claude-haiku", 1001) == 251  # 250.25 -> 251
    assert charge("claude-haiku", 4) == 1  # exactly 1 µcr
    # Output: 1.25 µcr per token. 1 input + 3 output = 0.25 + 3.75 = 4 exactly: the lines are summed
    # before the single rounding (rounding each line would give 1 + 4 = 5).
    assert charge("claude-haiku", input_tokens=1, output_tokens=3) == 4


def test_voice_seconds_at_a_per_minute_rate_with_a_one_minute_minimum() -> None:
    # 7 s × 0.013 / 60 = 1,516.67 µcr, below the 0.013-credit (13,000 µcr) session minimum.
    assert charge("voice_minute", 7) == 13_000
    assert charge("voice_minute", 60) == 13_000  # exactly the minimum
    # 61 s = 13,216.67 µcr -> 13,217.
    assert charge("voice_minute", 61) == 13_217
    p = price(CARD, "voice_minute", {"seconds": 7})
    assert p.minimum_ucr == 13_000
    assert p.amount_ucr == 13_000
    assert p.exact_ucr < p.minimum_ucr


def test_training_h100_minimum_and_per_minute() -> None:
    # 3 min × 0.0665 = 0.1995 credits, below the 10-minute minimum of 0.665 credits.
    assert charge("training_h100_per_minute", 3) == 665_000
    # 20 min × 0.0665 = 1.33 credits.
    assert charge("training_h100_per_minute", 20) == 1_330_000


def test_messaging_images_speech_and_instances() -> None:
    assert charge("email", 1) == 1_000
    assert charge("sms", 3) == 22_500  # 3 × 0.0075
    assert charge("voice_synthesis_1k_chars", 1500) == 450_000  # 1.5 × 0.30
    assert charge("voice_synthesis_1k_chars", 1) == 300
    assert charge("image_generate", 5) == 200_000
    assert charge("gpu-s", 1) == 800_000
    assert charge("gpu-l", 2) == 7_980_000


def test_price_explains_itself() -> None:
    p = price(CARD, "gpt-4o", {"input_tokens": 1234, "output_tokens": 567})
    assert p.operation == "gpt-4o"
    assert p.rate_card_version == CARD.version
    assert {(ln.dimension, ln.quantity, ln.per) for ln in p.lines} == {
        ("input_tokens", 1234, 1_000_000), ("output_tokens", 567, 1_000_000)}
    assert sum(ln.exact_ucr for ln in p.lines) == p.exact_ucr == 8_755


# ---- bad input ---------------------------------------------------------------------------------


def test_unknown_slug() -> None:
    with pytest.raises(UnknownOperation, match="gpt-5"):
        CARD.operation("gpt-5")
    with pytest.raises(UnknownOperation):
        price(CARD, "gpt-5", {"input_tokens": 1})
    assert UnknownOperation.status == 422


@pytest.mark.parametrize(
    ("quantity", "quantities"),
    [
        (0, None),
        (-1, None),
        (1.5, None),
        (2.0, None),
        (True, None),
        (False, None),
        (2**70, None),
        (MAX_QUANTITY + 1, None),
        ("5", None),
        (None, {"frames": 1}),
        (None, {"input_tokens": 1, "frames": 1}),
        (None, {"input_tokens": 0}),
        (None, {"input_tokens": 0, "output_tokens": 0}),
        (None, {"output_tokens": -5}),
        (None, {"output_tokens": 0.5}),
        (None, {"output_tokens": True}),
        (None, {}),
        (1, {"input_tokens": 1}),
        (None, None),
    ],
)
def test_invalid_quantities(quantity: Any, quantities: Any) -> None:
    with pytest.raises(InvalidQuantity):
        normalize_quantities(CARD.operation("gpt-4o"), quantity, quantities)
    assert InvalidQuantity.status == 422


def test_largest_quantity_is_accepted() -> None:
    assert normalize_quantities(CARD.operation("email"), MAX_QUANTITY, None) == {"messages": MAX_QUANTITY}
    # 10^15 emails × 0.001 credits = 10^12 credits = 10^18 µcr, still within range.
    assert charge("email", MAX_QUANTITY) == 10**18


def test_cost_out_of_range() -> None:
    # 10^15 hours × 3.99 credits = 3.99e21 µcr, beyond MAX_UCR (2^62 ≈ 4.6e18).
    with pytest.raises(InvalidQuantity, match="out of range"):
        charge("gpu-l", MAX_QUANTITY)


# ---- invalid cards -----------------------------------------------------------------------------


def edited(old: str, new: str) -> str:
    assert old in TEXT, old
    return TEXT.replace(old, new, 1)


def test_invalid_toml() -> None:
    with pytest.raises(RateCardError, match="not valid TOML"):
        parse_rate_card("version = \n[operations")
    with pytest.raises(RateCardError, match="not valid TOML"):
        parse_rate_card('version = "again"\n' + TEXT)  # the same key twice


def test_unit_without_a_rate() -> None:
    text = edited('unit = "messages"\nrates.messages = { credits = "0.001" }',
                  'unit = "emails"\nrates.messages = { credits = "0.001" }')
    with pytest.raises(RateCardError, match=r"operations\.email.*unit 'emails' has no rate"):
        parse_rate_card(text)


def test_default_plan_missing() -> None:
    with pytest.raises(RateCardError, match="default_plan 'gold' is not a plan"):
        parse_rate_card(edited('default_plan = "free"', 'default_plan = "gold"'))
    with pytest.raises(RateCardError, match="default_plan"):
        parse_rate_card(edited('default_plan = "free"\n', ""))


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ('rates.messages = { credits = "0.001" }', 'rates.messages = { credits = "-0.001" }',
         r"operations\.email\.rates\.messages\.credits"),
        ('credits = "10"\nprice_cents = 1000', 'credits = "10"\nprice_cents = -1000', r"packs\.starter\.price_cents"),
        ('credits = "50"\nbonus = "5"', 'credits = "50"\nbonus = "-5"', r"packs\.builder\.bonus"),
        ('monthly_credits = "25"', 'monthly_credits = "-25"', r"plans\.pro\.monthly_credits"),
        ('minimum = "0.013"', 'minimum = "-0.013"', r"operations\.voice_minute\.minimum"),
        ('rates.seconds = { credits = "0.013", per = 60 }', 'rates.seconds = { credits = "0.013", per = 0 }',
         r"operations\.voice_minute\.rates\.seconds\.per"),
        ('rates.messages = { credits = "0.001" }', 'rates.messages = { credits = "NaN" }',
         r"operations\.email\.rates\.messages\.credits"),
        ('rates.messages = { credits = "0.001" }', 'rates.messages = { credits = "lots" }',
         r"operations\.email\.rates\.messages\.credits"),
    ],
)
def test_negative_or_invalid_prices(old: str, new: str, where: str) -> None:
    with pytest.raises(RateCardError, match=where):
        parse_rate_card(edited(old, new))


def test_other_invalid_cards() -> None:
    with pytest.raises(RateCardError, match="names itself"):
        parse_rate_card(edited('[operations.email]\n', '[operations.email]\nslug = "sms"\n'))
    with pytest.raises(RateCardError, match="timezone"):
        parse_rate_card(edited("expires_at = 2027-06-30T23:59:59Z", "expires_at = 2027-06-30T23:59:59"))
    with pytest.raises(RateCardError, match="custom_amount"):
        parse_rate_card(edited("[custom_amount]", "[custom_amount_typo]"))
    with pytest.raises(RateCardError, match="description"):
        parse_rate_card(edited('description = "Transactional email"', "description = 5"))
    with pytest.raises(RateCardError, match="typo"):  # unknown keys are refused, not ignored
        parse_rate_card(edited('description = "Transactional email"', 'typo = "x"'))


def test_a_valid_edit_is_accepted() -> None:
    card = parse_rate_card(edited('rates.messages = { credits = "0.001" }', 'rates.messages = { credits = "0.002" }'))
    assert card.operation("email").rates["messages"].credits == Decimal("0.002")


def test_a_float_price_is_refused() -> None:
    text = edited('rates.messages = { credits = "0.001" }', "rates.messages = { credits = 123456789.123456789 }")
    with pytest.raises(RateCardError):
        parse_rate_card(text)


def test_a_boolean_per_is_refused() -> None:
    with pytest.raises(RateCardError):
        parse_rate_card(edited("per = 60", "per = true"))


# ---- the price cache ---------------------------------------------------------------------------


def test_a_derived_card_never_reuses_a_cached_price() -> None:
    """``model_copy`` shares the price cache: a changed rate or version must still price afresh."""
    card = frozen_rate_card()
    first = price(card, "email", {"messages": 3})
    assert price(card, "email", {"messages": 3}) is first  # cached on this card

    email = card.operation("email")
    dearer = email.model_copy(update={"rates": {"messages": email.rates["messages"].model_copy(
        update={"credits": email.rates["messages"].credits * 2})}})
    repriced = card.model_copy(update={"operations": {**card.operations, "email": dearer}})
    assert price(repriced, "email", {"messages": 3}).amount_ucr == 2 * first.amount_ucr

    bumped = card.model_copy(update={"version": "2099-01-01"})
    again = price(bumped, "email", {"messages": 3})
    assert again.rate_card_version == "2099-01-01" and again.amount_ucr == first.amount_ucr
    assert price(card, "email", {"messages": 3}).rate_card_version == card.version


def test_a_card_in_use_still_equals_its_stored_content() -> None:
    card = frozen_rate_card()
    price(card, "email", {"messages": 1})
    assert RateCard.model_validate(card.model_dump()).model_dump() == card.model_dump()


# ---- coupon codes and the refund window ----------------------------------------------------------


def test_coupon_codes_are_found_whatever_their_case() -> None:
    welcome = CARD.coupons["WELCOME10"]
    for typed in ("WELCOME10", "welcome10", "Welcome10", "  welcome10\t"):
        assert CARD.coupon(typed) is welcome
    assert CARD.coupon("WELCOME1") is None
    assert coupon_code("WELCOME10") == coupon_code("welcome10")
    # A card may spell its codes as it likes; they are found the same way.
    lower = parse_rate_card(TEXT + '\n[coupons.spring]\ncredits = "3"\n')
    spring = lower.coupon("SPRING")
    assert spring is not None and spring.code == "spring"


def test_two_codes_that_differ_only_in_case_are_refused() -> None:
    with pytest.raises(RateCardError, match="'WELCOME10' and 'welcome10' are one code"):
        parse_rate_card(TEXT + '\n[coupons.welcome10]\ncredits = "3"\n')


def test_the_refund_window_defaults_to_30_days() -> None:
    assert CARD.refund_window_days == 30
    without = TEXT.replace("refund_window_days = 30\n", "")
    assert without != TEXT
    assert parse_rate_card(without).refund_window_days == 30
    assert parse_rate_card(TEXT.replace("refund_window_days = 30", "refund_window_days = 14")).refund_window_days == 14
    for bad in ("-1", '"30"', "30.5"):
        with pytest.raises(RateCardError, match="refund_window_days"):
            parse_rate_card(TEXT.replace("refund_window_days = 30", f"refund_window_days = {bad}"))
