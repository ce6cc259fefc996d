"""The one source of time, injectable so tests and the demo can simulate a month without sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when


def add_months(when: datetime, months: int) -> datetime:
    """``when`` moved by whole calendar months, clamping the day (Jan 31 + 1 month = Feb 28/29)."""
    month0 = when.month - 1 + months
    year, month = when.year + month0 // 12, month0 % 12 + 1
    for day in (when.day, 30, 29, 28):
        try:
            return when.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def cycle_at(opened_at: datetime, now: datetime) -> int:
    """The billing cycle ``now`` falls in (0: the month the account opened)."""
    months = (now.year - opened_at.year) * 12 + now.month - opened_at.month
    while months > 0 and add_months(opened_at, months) > now:
        months -= 1
    return max(months, 0)


def month_key(when: datetime) -> str:
    # Formatted by hand: every debit computes these, and strftime is several times slower.
    if when.tzinfo is not UTC:
        when = when.astimezone(UTC)
    return f"M{when.year:04d}-{when.month:02d}"


def day_key(when: datetime) -> str:
    if when.tzinfo is not UTC:
        when = when.astimezone(UTC)
    return f"D{when.year:04d}-{when.month:02d}-{when.day:02d}"


HOUR = timedelta(hours=1)
