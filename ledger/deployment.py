"""A deployment's clock: what it is paid through, what it used, and which hours fall due when.

Pure: ``ledger.state`` folds it, ``decide`` and the scheduler both ask ``hour_due_at``, so they
cannot disagree on which hours are due. ``ledger.state`` re-exports all of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ledger.clock import HOUR


@dataclass(frozen=True, slots=True)
class Deployment:
    """A deployment's clock: it is paid through ``hours_charged`` hours of running time.

    Pauses stop the clock: ``used`` is the running time used before the current running segment
    (began at ``segment_started_at``), or in all while paused or stopped.
    """

    deployment_id: str
    instance_type: str
    hourly_ucr: int
    status: str  # running | paused | stopped
    hours_charged: int
    credits_ucr: int
    segment_started_at: datetime | None
    used: timedelta
    paused_reason: str | None
    started_at: datetime

    @property
    def paid(self) -> timedelta:
        """The running time paid for: every hour charged is an hour of running, however it is split."""
        return self.hours_charged * HOUR

    def used_at(self, now: datetime) -> timedelta:
        """Running time used by ``now``."""
        if self.segment_started_at is None:
            return self.used
        # A clock that stepped back never gives time back.
        return self.used + max(now - self.segment_started_at, timedelta(0))

    def hours_due(self, now: datetime) -> range:
        """The hour indexes due by ``now`` and not charged yet, in order, by ``hour_due_at``'s rule.

        While paused or stopped the clock stands still: hour n is due once n hours are used.
        """
        return hours_due(self.segment_started_at or now, self.used, self.hours_charged, now)


def hour_due_at(segment_started_at: datetime, used: timedelta, hour_index: int) -> datetime:
    """When hour ``hour_index`` of a deployment running since ``segment_started_at`` is due.

    Hour n is charged when the running time used (``used`` before this segment, plus the
    segment so far) reaches n hours, i.e. when the paid time runs out. The scheduler and
    ``decide`` both ask this, so they cannot disagree on which hours are due.
    """
    return segment_started_at + hour_index * HOUR - used


def hours_due(segment_started_at: datetime, used: timedelta, hours_charged: int, now: datetime) -> range:
    """The hour indexes from ``hours_charged`` on that are due by ``now`` (``hour_due_at``), in order."""
    n = hours_charged
    while hour_due_at(segment_started_at, used, n) <= now:
        n += 1
    return range(hours_charged, n)
