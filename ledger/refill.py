"""What the auto-refill relay reads from the log, as pure functions: where the balance crossed
below the threshold, and whether it runs out soon.

A refill is asked once per crossing (``RequestAutoRefill(crossing=...)``), the crossing being the
account ``version`` of the event that took the balance from at/above the threshold to below it;
the relay derives the Stripe idempotency key from it, so however many workers find the same
crossing, one PaymentIntent is made.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

_US = timedelta(microseconds=1)
_HOUR_US = timedelta(hours=1) // _US


def crossings(threshold_ucr: int, entries: Iterable[tuple[int, int, int]]) -> list[int]:
    """The versions whose event took the balance below ``threshold_ucr`` from at or above it.

    ``entries`` are an account's events in version order as ``(version, amount_ucr,
    balance_after_ucr)``: the balance before each is ``balance_after_ucr - amount_ucr``, so any
    slice of the log answers alone (an event that starts a slice already below counts only if it
    crossed).
    """
    return [version for version, amount, after in entries if after < threshold_ucr <= after - amount]


def runs_out_within(available_ucr: int, hours: int, *, burned_ucr: int, window: timedelta,
                    hourly_ucr: int = 0) -> bool:
    """Whether ``available_ucr`` is used up within ``hours`` at the recent burn rate (``burned_ucr``
    over ``window``) plus what running deployments cost an hour (``hourly_ucr``). Exact integers."""
    if available_ucr <= 0:
        return True
    window_us = window // _US
    if window_us <= 0:
        return hourly_ucr * hours >= available_ucr
    # available <= (burned / window + hourly / hour) * hours, times window (in µs) on both sides.
    return available_ucr * window_us <= burned_ucr * hours * _HOUR_US + hourly_ucr * hours * window_us
