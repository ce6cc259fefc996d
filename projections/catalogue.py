"""Every projector, in the order they run, and finding one by name."""

from __future__ import annotations

from ledger.errors import InvalidRequest
from projections.activities import ACTIVITIES
from projections.history import HISTORY
from projections.projector import Projector
from projections.usage import USAGE

PROJECTORS: tuple[Projector, ...] = (HISTORY, ACTIVITIES, USAGE)


def projector(name: str) -> Projector:
    """The projector called ``name`` (422 naming the ones there are, for any other)."""
    for p in PROJECTORS:
        if p.name == name:
            return p
    raise InvalidRequest(f"no projection {name!r}; there are: {', '.join(p.name for p in PROJECTORS)}")
