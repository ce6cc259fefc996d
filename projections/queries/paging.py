"""What every read-model page shares: one consistent snapshot, the paging rules, the page itself.

A page and its freshness are read in one REPEATABLE READ transaction, so ``as_of_position`` is
exactly the checkpoint the rows were folded to (a projector commits its rows with its checkpoint).
The stable cursor is a stream ``version``: rows keyed by an account's version only ever arrive
above the versions already folded (an account's events reach the log in version order), so "rows
below the cursor" is the same set on every page of an iteration while writes go on.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.errors import InvalidRequest, UnknownAccount
from projections.freshness import Freshness

T = TypeVar("T")

MAX_LIMIT = 500
MAX_OFFSET = 10_000_000
#: Stream versions are PostgreSQL bigints: "before" this is "no cursor".
NO_CURSOR = 2**63 - 1


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: Sequence[T]
    has_more: bool
    #: The version to continue below (the last row's), when there is more.
    next_before: int | None
    freshness: Freshness


def check_paging(limit: int, offset: int, before: int | None = None) -> None:
    """422 for a page the API would refuse too (the CLI and other callers come through here)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be 1..{MAX_LIMIT}")
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidRequest(f"offset must be 0..{MAX_OFFSET}")
    if before is not None and not 0 <= before <= NO_CURSOR:
        raise InvalidRequest("cursor is out of range")


@contextlib.asynccontextmanager
async def snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A read-only REPEATABLE READ transaction: every statement in it sees the same committed state."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        async with conn.begin():
            yield conn


async def require_account(conn: AsyncConnection, account_id: str) -> None:
    """404 for an account that does not exist (before the projector ran, an existing one reads empty)."""
    found = (await conn.execute(text("SELECT 1 FROM accounts WHERE account_id = :a"), {"a": account_id})).first()
    if found is None:
        raise UnknownAccount(account_id)


class Versioned(Protocol):
    @property
    def version(self) -> int: ...


V = TypeVar("V", bound=Versioned)


def page_of(rows: Sequence[V], limit: int, freshness: Freshness) -> Page[V]:
    """The page from up to ``limit + 1`` rows fetched (the extra one only says there is more)."""
    more = len(rows) > limit
    kept = rows[:limit]
    return Page(rows=kept, has_more=more, next_before=kept[-1].version if more else None, freshness=freshness)
