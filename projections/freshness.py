"""How fresh a read is: the log position its projector has folded through, and how long the oldest
event it has not folded yet has waited (``as_of_position`` and ``lag_ms`` in every read-model
response)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.log import load_checkpoint, log_lag_ms
from projections.projector import Projector


@dataclass(frozen=True)
class Freshness:
    #: The global ``position`` of the last event folded (0: nothing yet).
    as_of_position: int
    #: 0 when caught up; else how long, in ms, the oldest event not folded yet has waited.
    lag_ms: int


async def freshness(conn: AsyncConnection, *projectors: Projector) -> Freshness:
    """The freshness of a read of ``projectors``' tables: the least fresh of them.

    Two index lookups each; read in the same transaction as the rows when they must agree.
    """
    found = []
    for p in projectors:
        at = await load_checkpoint(conn, p.checkpoint)
        found.append(Freshness(at.position, await log_lag_ms(conn, at)))
    return Freshness(min(f.as_of_position for f in found), max(f.lag_ms for f in found))


async def status(conn: AsyncConnection, projectors: Sequence[Projector]) -> dict[str, Freshness]:
    """Each projector's freshness (``credits projections status``)."""
    return {p.name: await freshness(conn, p) for p in projectors}
