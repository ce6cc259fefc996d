"""What an account's state holds about money paid in through Stripe: disputes of purchases.

Plain frozen values, folded by ``ledger.state.apply`` and stored by ``ledger.rows``. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

DisputeStatus = Literal["open", "won", "lost"]


@dataclass(frozen=True, slots=True)
class Dispute:
    """A purchase's dispute: ``frozen_ucr`` was taken off its grant when it opened; ``restored_ucr``
    went back when it was won (0 while open or when lost)."""

    dispute_id: str
    status: DisputeStatus
    frozen_ucr: int
    restored_ucr: int
    opened_at: datetime
    closed_at: datetime | None = None
