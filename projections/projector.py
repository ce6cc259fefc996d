"""What a projector is: a name, the tables it owns, and SQL that folds a span of the log into them.

A projector's statements read ``events`` within a ``LogSpan`` (``{span}`` in each statement
becomes ``ledger.log.SPAN``) and write only its own tables, in the order given. They must be
pure functions of the events (no ``now()``, nothing read from the write side's inline tables),
and folding a span in pieces must give what folding it at once gives: rollups add with
``ON CONFLICT ... DO UPDATE``, rows are keyed by the event that made them. That is what lets a
rebuild from position 0, or ``credits verify``'s fresh fold, equal the incrementally built tables.

Statements name their tables as ``{table}`` too: the live tables, or the session-temporary copies
a rebuild or ``credits verify`` folds into (``pg_temp.<table>``). Spelled out rather than left to
the search path, because a prepared statement keeps the table it was first planned against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.log import SPAN, LogSpan


@dataclass(frozen=True)
class Projector:
    #: Also its checkpoint's name (``projection:<name>``) and what ``credits projections`` calls it.
    name: str
    #: The tables it owns and alone writes, in the order they are filled.
    tables: tuple[str, ...]
    #: The event types its statements fold (bound as ``:types``).
    types: frozenset[str]
    #: SQL run in order for each span; each names ``{span}`` where it reads ``events``, and its
    #: tables as ``{table}``.
    statements: tuple[str, ...]

    @property
    def checkpoint(self) -> str:
        return f"projection:{self.name}"

    async def fold(self, conn: AsyncConnection, span: LogSpan, into: Mapping[str, str] | None = None) -> None:
        """Fold the events of ``span`` into this projector's tables (or the ones ``into`` names for
        them), in the caller's transaction."""
        names = {**{t: t for t in self.tables}, **(into or {})}
        params = {**span.params(), "types": sorted(self.types)}
        for statement in self.statements:
            await conn.execute(text(statement.format(span=SPAN, **names)), params)
