"""Money: integer micro-credits (µcr), exact rates, and the two rounding rules.

1 credit = 1,000,000 µcr. Amounts are plain ``int``; rates are ``Decimal`` read from the rate
card; products are computed as exact ``Fraction`` and rounded once, up for a charge (never
under-charge) and down for a refund or release (never over-give).
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from typing import Final

UCR_PER_CREDIT: Final = 1_000_000

# ---- The documented ranges -------------------------------------------------------------------
# Every stored amount is a PostgreSQL BIGINT (at most 2^63 - 1). Inside these ranges nothing
# overflows; a command that would leave them is refused by ``decide`` with ``OutOfRange`` (422)
# before anything is recorded (docs/api.md, "Ranges").

#: Largest amount of any one command, event or grant, and of a balance either way (so of the
#: debt, and of what is reserved, which never exceeds the balance).
MAX_UCR: Final = 2**62
#: Largest single quantity (tokens, messages, seconds...) a command may carry.
MAX_QUANTITY: Final = 10**15
#: Largest value of every spend counter (an account's, agent's or member's spend in a day, a month
#: or a run) and of a deployment's total. Half of ``MAX_UCR``: a week's spend, which spans at most
#: two calendar months, still fits ``MAX_UCR`` (weekly summaries, the run-out forecast).
MAX_SPEND_UCR: Final = MAX_UCR // 2

# ASCII digits only: ``\d`` would let int() read Arabic-Indic or full-width digits as money.
_CREDITS_RE = re.compile(r"^[+-]?([0-9]+)(?:\.([0-9]{1,6}))?$")


def ceil_ucr(exact: Fraction) -> int:
    """Round an exact µcr amount up: the rule for anything charged."""
    return -((-exact.numerator) // exact.denominator)


def floor_ucr(exact: Fraction) -> int:
    """Round an exact µcr amount down: the rule for anything refunded or released."""
    return exact.numerator // exact.denominator


def credits_to_exact_ucr(credits: Decimal | str | int) -> Fraction:
    """Exact µcr value of a credit amount given as a ``Decimal`` (no rounding)."""
    return Fraction(Decimal(credits)) * UCR_PER_CREDIT


def format_credits(ucr: int) -> str:
    """Render µcr as a decimal string of credits with six places, e.g. ``"12.500000"``."""
    sign = "-" if ucr < 0 else ""
    whole, frac = divmod(abs(ucr), UCR_PER_CREDIT)
    return f"{sign}{whole}.{frac:06d}"


def format_cents(cents: int) -> str:
    """Render money in cents (a price, not credits) as a decimal string, e.g. ``"5.00"``."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def parse_credits(text: str) -> int:
    """Parse a decimal string of credits (at most six places) into µcr, exactly.

    Raises ``ValueError`` for anything that is not such a string, including more than six
    decimal places (that would need rounding the caller did not ask for).
    """
    m = _CREDITS_RE.match(text.strip())
    if m is None:
        raise ValueError(f"not a credit amount with at most 6 decimal places: {text!r}")
    whole, frac = m.group(1), (m.group(2) or "").ljust(6, "0")
    value = int(whole) * UCR_PER_CREDIT + int(frac)
    value = -value if text.strip().startswith("-") else value
    if abs(value) > MAX_UCR:
        raise ValueError(f"credit amount out of range: {text!r}")
    return value


def fraction_to_decimal_str(exact: Fraction, places: int = 12) -> str:
    """Render an exact fraction for people (explain output); truncated, never used for money."""
    n, d = exact.numerator, exact.denominator
    if d == 1:  # the usual case: a whole number of µcr
        return str(n)
    # Integer arithmetic on the lowest-terms pair: every charge renders one, and Fraction
    # arithmetic (a gcd per operation) was most of the cost.
    q, r = divmod(abs(n) * 10**places, d)
    whole, frac = divmod(q, 10**places)
    sign = "-" if n < 0 and q else ""
    text = f"{sign}{whole}.{frac:0{places}d}".rstrip("0").rstrip(".")
    return text + ("…" if r else "")
