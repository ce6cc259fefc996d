"""Grants and the burn order: which credits a debit draws from, and in what order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from ledger.events import Draw, GrantSource

#: Among grants that expire at the same time, or never: promotion first, purchase last.
SOURCE_RANK: dict[str, int] = {"promotion": 0, "allowance": 1, "refund": 2, "purchase": 3}


@dataclass(frozen=True, slots=True)
class Grant:
    grant_id: UUID
    source: GrantSource
    original_ucr: int
    remaining_ucr: int
    expires_at: datetime | None
    granted_at: datetime


_NEVER = datetime.max.replace(tzinfo=UTC)


def burn_key(g: Grant) -> tuple[datetime, int, datetime, str]:
    """Soonest-expiring first, then promotion, allowance, refund, purchase; ties by age."""
    return (g.expires_at or _NEVER, SOURCE_RANK[g.source], g.granted_at, str(g.grant_id))


def plan_draws(grants: Iterable[Grant], amount_ucr: int) -> tuple[tuple[Draw, ...], int]:
    """Draw ``amount_ucr`` from live grants in burn order; return the draws and what is left unpaid."""
    left = amount_ucr
    draws: list[Draw] = []
    for g in sorted((g for g in grants if g.remaining_ucr > 0), key=burn_key):
        if left == 0:
            break
        take = min(left, g.remaining_ucr)
        draws.append(Draw(grant_id=g.grant_id, source=g.source, amount_ucr=take))
        left -= take
    return tuple(draws), left
