"""Folding everything already committed, on a server shared with other work.

``Projections.catch_up`` stops where the log is not final yet: below the oldest transaction in
flight anywhere on the server (``ledger.log``), which another database's open transaction holds
back for as long as it stays open. A test that must read what it wrote folds until nothing of its
database is left unfolded.
"""

from __future__ import annotations

import asyncio
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from projections.runner import Projections, lags_ms


async def settle(engine: AsyncEngine, *, within_s: int = 120) -> None:
    """Fold until every projector has folded every event committed before the call."""
    deadline = time.monotonic() + within_s
    while True:
        await Projections(engine).catch_up()
        async with engine.connect() as conn:
            behind = {name: lag for name, lag in (await lags_ms(conn)).items() if lag}
        if not behind:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"projectors still behind after {within_s} s: {behind}")
        await asyncio.sleep(0.05)
