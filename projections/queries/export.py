"""The CSV export for accounting: one line per usage event of an account (``proj_executions``), oldest
first, with exactly the columns ``date,workflow,agent,model,input_tokens,output_tokens,credits,status``.

- ``date``: when the usage happened (``occurred_at``), ISO-8601 in UTC (``2026-11-01T09:00:00Z``;
  fractions of a second only when there are some).
- ``workflow``: the attribution's ``flow``; ``agent``: its agent; ``model``: the operation slug.
- ``input_tokens``, ``output_tokens``: the usage's token counts (0 when it has none).
- ``credits``: what it cost, credits with six places (``"0.002750"``).
- ``status``: ``in_debt`` when the account's credits did not cover it and some of its cost became
  debt (metered usage past zero); else ``charged`` for gated usage (a charge, a settled reservation,
  a deployment hour), paid from credits before it ran; else ``metered`` (usage recorded after it
  happened, paid from credits).

Text a user chose (workflow, agent, model) is neutralised for spreadsheets (``projections.csv_cells``).

An export reads a fixed cut of the read model: the rows of the account up to the newest version
folded when it began (``open_export``), so rows folded meanwhile never shift or join it. It is then
read in keyset pages (``occurred_at, version``), each a short statement of its own: a slow reader
holds no transaction and no pooled connection between pages.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.errors import InvalidRequest, UnknownAccount
from projections.csv_cells import credits_cell, csv_text, number_cell, text_cell
from projections.freshness import Freshness, freshness
from projections.history import HISTORY

COLUMNS = ("date", "workflow", "agent", "model", "input_tokens", "output_tokens", "credits", "status")
#: Rows per page: a page is one indexed statement and about 100 KB of CSV.
CHUNK = 1000

Status = Literal["charged", "metered", "in_debt"]

#: Bounds standing for "no bound" (PostgreSQL's timestamptz holds both).
_EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
_DATE_ONLY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def status_of(gated: bool, debt_added_ucr: int) -> Status:
    if debt_added_ucr > 0:
        return "in_debt"
    return "charged" if gated else "metered"


@dataclass(frozen=True)
class ExportRow:
    version: int
    occurred_at: datetime
    workflow: str | None
    agent: str | None
    model: str
    input_tokens: int
    output_tokens: int
    cost_ucr: int
    status: Status

    def cells(self) -> tuple[str, ...]:
        """The row's CSV cells, in ``COLUMNS`` order."""
        return (iso_utc(self.occurred_at), text_cell(self.workflow), text_cell(self.agent), text_cell(self.model),
                number_cell(self.input_tokens), number_cell(self.output_tokens), credits_cell(self.cost_ucr),
                self.status)


def iso_utc(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Range:
    """``[start, end)`` of ``occurred_at``; ``None``: unbounded on that side."""

    start: datetime | None = None
    end: datetime | None = None


def parse_bound(name: str, value: str | None) -> tuple[datetime, bool] | None:
    """A range bound as written: an ISO-8601 date (``2026-11-30``: UTC midnight; ``True`` beside it)
    or a date and time with its offset (``2026-11-30T12:00:00Z``). 422 for anything else."""
    if value is None or value == "":
        return None
    text_value = value.strip()
    if _DATE_ONLY.match(text_value):
        try:
            return datetime.combine(date.fromisoformat(text_value), time(), tzinfo=UTC), True
        except ValueError:
            raise InvalidRequest(f"{name}: {value!r} is not a date (YYYY-MM-DD)") from None
    try:
        moment = datetime.fromisoformat(text_value)
    except ValueError:
        raise InvalidRequest(f"{name}: {value!r} is not an ISO-8601 date or date and time") from None
    if moment.tzinfo is None:
        raise InvalidRequest(f"{name}: {value!r} has no UTC offset (add Z or +00:00), or give a date alone")
    try:
        return moment.astimezone(UTC), False
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise InvalidRequest(f"{name}: {value!r} is out of range") from None


def parse_range(start: str | None, end: str | None) -> Range:
    """The export's range from its ``from`` and ``to`` texts. ``from`` is included; so is ``to``'s
    whole day when it is a date alone, else ``to`` is the first moment left out. 422 when ``from``
    is after ``to`` as written (an equal pair of moments is an empty range)."""
    first, last = parse_bound("from", start), parse_bound("to", end)
    if first is not None and last is not None and first[0] > last[0]:
        raise InvalidRequest(f"from ({start}) is after to ({end})")
    if last is None:
        return Range(first[0] if first else None, None)
    moment, whole_day = last
    if whole_day:
        moment = moment + timedelta(days=1) if moment.date() < date.max else _LATEST
    return Range(first[0] if first else None, moment)


@dataclass(frozen=True)
class Export:
    """What one export reads: the account, its range, and the cut of the read model it began at."""

    account_id: str
    range: Range
    #: The newest version of the account folded when the export began: rows past it are left out.
    upto_version: int
    freshness: Freshness

    @property
    def filename(self) -> str:
        """A file name for the download (``<account>-usage[-from][-to].csv``, safe characters only)."""
        parts = [self.account_id, "usage"]
        parts += [f"from-{self.range.start:%Y%m%dT%H%M%SZ}"] if self.range.start else []
        parts += [f"to-{self.range.end:%Y%m%dT%H%M%SZ}"] if self.range.end else []
        return re.sub(r"[^A-Za-z0-9._-]", "_", "-".join(parts)) + ".csv"


async def open_export(engine: AsyncEngine, account_id: str, within: Range) -> Export:
    """Begin an export: 404 for an unknown account; the cut and freshness read together."""
    async with engine.connect() as conn:
        await _require_account(conn, account_id)
        fresh = await freshness(conn, HISTORY)
        upto = (await conn.execute(text("SELECT max(version) FROM proj_executions WHERE account_id = :a"),
                                   {"a": account_id})).scalar()
    return Export(account_id, within, int(upto or 0), fresh)


async def _require_account(conn: AsyncConnection, account_id: str) -> None:
    found = (await conn.execute(text("SELECT 1 FROM accounts WHERE account_id = :a"), {"a": account_id})).first()
    if found is None:
        raise UnknownAccount(account_id)


# The redundant ``occurred_at >= :after_at`` lets the (account_id, occurred_at) index start the
# scan at the page's first row; the row comparison then breaks ties by version.
_PAGE = text(
    "SELECT version, occurred_at, flow, agent, operation, input_tokens, output_tokens, cost_ucr, gated,"
    " debt_added_ucr"
    " FROM proj_executions"
    " WHERE account_id = :a AND version <= :upto AND occurred_at >= :start AND occurred_at < :end"
    " AND occurred_at >= :after_at AND (occurred_at, version) > (:after_at, :after_version)"
    " ORDER BY occurred_at, version LIMIT :n")

_COUNT = text(
    "SELECT count(*) FROM proj_executions"
    " WHERE account_id = :a AND version <= :upto AND occurred_at >= :start AND occurred_at < :end")


def _params(export: Export) -> dict[str, object]:
    return {"a": export.account_id, "upto": export.upto_version,
            "start": export.range.start or _EARLIEST, "end": export.range.end or _LATEST}


async def count_rows(engine: AsyncEngine, export: Export) -> int:
    """How many rows ``export`` holds (for a progress bar)."""
    async with engine.connect() as conn:
        return int((await conn.execute(_COUNT, _params(export))).scalar_one())


async def pages(engine: AsyncEngine, export: Export, chunk: int = CHUNK) -> AsyncIterator[list[ExportRow]]:
    """The export's rows, oldest first, ``chunk`` at a time (the last page may be shorter, never empty)."""
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    after_at, after_version = _EARLIEST, -1
    while True:
        async with engine.connect() as conn:
            found = (await conn.execute(_PAGE, {**_params(export), "after_at": after_at,
                                                "after_version": after_version, "n": chunk})).all()
        if not found:
            return
        rows = [ExportRow(r.version, r.occurred_at, r.flow, r.agent, r.operation, r.input_tokens, r.output_tokens,
                          r.cost_ucr, status_of(r.gated, r.debt_added_ucr)) for r in found]
        yield rows
        if len(rows) < chunk:
            return
        after_at, after_version = rows[-1].occurred_at, rows[-1].version


def header() -> str:
    return csv_text([COLUMNS])


def csv_lines(rows: Sequence[ExportRow]) -> str:
    return csv_text(row.cells() for row in rows)


async def csv_chunks(engine: AsyncEngine, export: Export, chunk: int = CHUNK) -> AsyncIterator[str]:
    """The export as CSV text: the header, then one piece per page."""
    yield header()
    async for rows in pages(engine, export, chunk):
        yield csv_lines(rows)
