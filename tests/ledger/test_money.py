"""Money: integer µcr, charges rounded up, refunds rounded down, exact decimal strings.

Every expectation here is computed independently with ``fractions.Fraction`` from the rate, never
read back from the implementation.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidQuantity
from ledger.money import (
    MAX_QUANTITY,
    MAX_UCR,
    UCR_PER_CREDIT,
    ceil_ucr,
    credits_to_exact_ucr,
    floor_ucr,
    format_credits,
    fraction_to_decimal_str,
    parse_credits,
)
from ledger.rates import Operation, Rate, RateCard, price
from tests.cards import frozen_rate_card

PERS = (1, 60, 1000, 1_000_000)
CARD = frozen_rate_card()

rates = st.decimals(min_value=0, max_value=1000, places=8, allow_nan=False, allow_infinity=False)
quantities = st.integers(min_value=1, max_value=MAX_QUANTITY)
exacts = st.fractions(min_value=-(10**15), max_value=10**15, max_denominator=10**9)


def exact_ucr(rate: Decimal, quantity: int, per: int) -> Fraction:
    """The exact µcr of ``quantity`` units at ``rate`` credits per ``per`` units, from first principles."""
    return Fraction(str(rate)) * UCR_PER_CREDIT * quantity / per


def card_with(rate: Decimal, per: int, minimum: Decimal = Decimal(0), *, extra: Rate | None = None) -> RateCard:
    """The frozen test card plus one operation ``x`` priced at ``rate`` per ``per`` units (maybe a 2nd dimension)."""
    op_rates = {"units": Rate(credits=rate, per=per)}
    if extra is not None:
        op_rates["extras"] = extra
    op = Operation(slug="x", unit="units", rates=op_rates, minimum=minimum)
    return CARD.model_copy(update={"operations": {**CARD.operations, "x": op}})


# ---- rounding ----------------------------------------------------------------------------------


@settings(max_examples=300)
@given(exact=exacts)
@example(exact=Fraction(1, 3))
@example(exact=Fraction(-1, 3))
@example(exact=Fraction(5))
def test_ceil_and_floor_bracket_the_exact_value(exact: Fraction) -> None:
    up, down = ceil_ucr(exact), floor_ucr(exact)
    assert type(up) is int and type(down) is int
    assert exact <= up < exact + 1
    assert exact - 1 < down <= exact
    # Whole amounts are not moved by either rule.
    assert (up == down) == (exact.denominator == 1)


@settings(max_examples=300)
@given(rate=rates, per=st.sampled_from(PERS), quantity=quantities)
@example(rate=Decimal("0.00025"), per=1000, quantity=1)  # 0.25 µcr -> charged 1
@example(rate=Decimal("0.013"), per=60, quantity=7)  # 1516.66… µcr -> 1517
@example(rate=Decimal("1000"), per=1, quantity=MAX_QUANTITY)  # far beyond MAX_UCR
def test_a_charge_is_the_exact_product_rounded_up(rate: Decimal, per: int, quantity: int) -> None:
    exact = exact_ucr(rate, quantity, per)
    card = card_with(rate, per)
    if exact > MAX_UCR:
        with pytest.raises(InvalidQuantity):
            price(card, "x", {"units": quantity})
        return
    p = price(card, "x", {"units": quantity})
    assert type(p.amount_ucr) is int
    assert p.exact_ucr == exact
    assert exact <= p.amount_ucr < exact + 1  # never under-charged, never by a whole µcr too much
    # A refund of the same exact value is rounded the other way.
    refund = floor_ucr(exact)
    assert type(refund) is int
    assert exact - 1 < refund <= exact <= p.amount_ucr


@settings(max_examples=200)
@given(
    rate=rates,
    rate2=rates,
    per=st.sampled_from(PERS),
    per2=st.sampled_from(PERS),
    q=st.integers(1, 10**9),
    q2=st.integers(1, 10**9),
)
def test_several_dimensions_are_summed_exactly_and_rounded_once(
    rate: Decimal, rate2: Decimal, per: int, per2: int, q: int, q2: int
) -> None:
    card = card_with(rate, per, extra=Rate(credits=rate2, per=per2))
    exact = exact_ucr(rate, q, per) + exact_ucr(rate2, q2, per2)
    p = price(card, "x", {"units": q, "extras": q2})
    assert type(p.amount_ucr) is int
    assert exact <= p.amount_ucr < exact + 1
    # Rounding once never costs more than rounding each line.
    assert p.amount_ucr <= ceil_ucr(exact_ucr(rate, q, per)) + ceil_ucr(exact_ucr(rate2, q2, per2))


@settings(max_examples=200)
@given(rate=rates, per=st.sampled_from(PERS), quantity=st.integers(1, 10**6),
       minimum=st.decimals(min_value=0, max_value=10, places=6, allow_nan=False, allow_infinity=False))
def test_a_charge_is_never_below_the_session_minimum(
    rate: Decimal, per: int, quantity: int, minimum: Decimal
) -> None:
    p = price(card_with(rate, per, minimum), "x", {"units": quantity})
    exact = exact_ucr(rate, quantity, per)
    minimum_ucr = Fraction(str(minimum)) * UCR_PER_CREDIT  # six places: a whole number of µcr
    assert minimum_ucr.denominator == 1
    assert p.minimum_ucr == minimum_ucr
    assert p.amount_ucr >= minimum_ucr
    assert p.amount_ucr >= exact
    if exact > minimum_ucr:
        assert p.amount_ucr < exact + 1
    else:
        assert p.amount_ucr == minimum_ucr


@given(value=st.decimals(min_value=-(10**9), max_value=10**9, places=6, allow_nan=False, allow_infinity=False))
def test_credits_to_exact_ucr_is_exact(value: Decimal) -> None:
    exact = credits_to_exact_ucr(value)
    assert exact == Fraction(str(value)) * 10**6
    assert exact.denominator == 1  # six places of credits are whole µcr


# ---- decimal strings ---------------------------------------------------------------------------

_FORMAT = re.compile(r"^-?\d+\.\d{6}$")


@settings(max_examples=500)
@given(ucr=st.integers(min_value=-MAX_UCR, max_value=MAX_UCR))
@example(ucr=MAX_UCR)
@example(ucr=-MAX_UCR)
@example(ucr=0)
@example(ucr=-1)
@example(ucr=999_999)
def test_format_and_parse_round_trip(ucr: int) -> None:
    text = format_credits(ucr)
    assert _FORMAT.match(text), text
    # The string is the exact value in credits: six places, no float involved.
    assert Decimal(text) * UCR_PER_CREDIT == ucr
    back = parse_credits(text)
    assert type(back) is int
    assert back == ucr


@given(data=st.data(), places=st.integers(0, 6), negative=st.booleans())
def test_parse_accepts_up_to_six_places_exactly(data: st.DataObject, places: int, negative: bool) -> None:
    whole = data.draw(st.integers(0, MAX_UCR // UCR_PER_CREDIT - 1))
    frac = data.draw(st.integers(0, 10**places - 1))
    text = ("-" if negative else "") + str(whole) + (f".{frac:0{places}d}" if places else "")
    expected = (whole * UCR_PER_CREDIT + frac * 10 ** (6 - places)) * (-1 if negative else 1)
    value = parse_credits(text)
    assert type(value) is int
    assert value == expected
    assert Fraction(Decimal(text)) * UCR_PER_CREDIT == value


@given(whole=st.integers(0, 10**6), frac=st.integers(0, 10**12 - 1), places=st.integers(7, 12),
       sign=st.sampled_from(["", "-", "+"]))
@example(whole=0, frac=1, places=7, sign="")  # 0.0000001: one tenth of a µcr
@example(whole=1, frac=0, places=7, sign="")  # 1.0000000: seven places even if zero
def test_parse_rejects_more_than_six_places(whole: int, frac: int, places: int, sign: str) -> None:
    text = f"{sign}{whole}.{frac % 10**places:0{places}d}"
    with pytest.raises(ValueError):
        parse_credits(text)


@pytest.mark.parametrize(
    "text",
    ["", " ", "abc", "1e6", "1E-3", "1,5", "0x10", "nan", "NaN", "inf", "-inf", "Infinity", "1.", ".5",
     "--1", "+-1", "1 000", "1_000", "1.2.3", "12.5 credits", "$12.50", "None", "true", "½"],
)
def test_parse_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_credits(text)


@pytest.mark.parametrize(
    "text",
    [
        format_credits(MAX_UCR + 1),
        format_credits(-MAX_UCR - 1),
        str(MAX_UCR // UCR_PER_CREDIT + 1),
        "9" * 40,
        "-" + "9" * 40 + ".5",
    ],
)
def test_parse_rejects_out_of_range(text: str) -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_credits(text)


def test_parse_accepts_the_range_bounds() -> None:
    assert parse_credits(format_credits(MAX_UCR)) == MAX_UCR
    assert parse_credits(format_credits(-MAX_UCR)) == -MAX_UCR


@pytest.mark.parametrize("text", ["١٢", "１２.５", "৫"])
def test_parse_rejects_non_ascii_digits(text: str) -> None:
    with pytest.raises(ValueError):
        parse_credits(text)


@pytest.mark.parametrize("bad", [1.5, 2.0, Decimal("1.5"), 15, None])
def test_parse_only_takes_strings(bad: object) -> None:
    # A float (or anything but a string) is never silently turned into money.
    with pytest.raises((ValueError, TypeError, AttributeError)):
        parse_credits(bad)  # type: ignore[arg-type]


def _decimal_str_reference(exact: Fraction, places: int = 12) -> str:
    """The Fraction-arithmetic rendering ``fraction_to_decimal_str`` replaced: its output is stored
    in events (and hashed into the chain), so the new one must match it byte for byte."""
    if exact.denominator == 1:
        return str(exact.numerator)
    scaled = exact * 10**places
    q = scaled.numerator // scaled.denominator if scaled >= 0 else -((-scaled.numerator) // scaled.denominator)
    sign = "-" if q < 0 else ""
    whole, frac = divmod(abs(q), 10**places)
    text = f"{sign}{whole}.{frac:0{places}d}".rstrip("0").rstrip(".")
    return text + ("" if scaled.denominator == 1 else "…")


@given(st.integers(min_value=-(10**30), max_value=10**30), st.integers(min_value=1, max_value=10**18),
       st.integers(min_value=0, max_value=15))
def test_fraction_to_decimal_str_matches_the_fraction_arithmetic(n: int, d: int, places: int) -> None:
    exact = Fraction(n, d)
    assert fraction_to_decimal_str(exact, places) == _decimal_str_reference(exact, places)
