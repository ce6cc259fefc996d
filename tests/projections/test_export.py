"""The CSV export query: a known set of usage matches row for row (values with commas, quotes and
line breaks; cells that would start a formula made text), oldest first by when it happened, within
``[from, to)``, on a fixed cut of the read model, and 5,000 rows stream in pages each exactly once."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.clock import ManualClock
from ledger.errors import InvalidRequest, UnknownAccount
from ledger.events import Attribution, UsageMetered
from ledger.service import Ledger
from projections.queries import export as x
from tests.projections.conftest import T0, OpenAccount
from tests.projections.folding import fold_all

HEADER = ["date", "workflow", "agent", "model", "input_tokens", "output_tokens", "credits", "status"]


def usage_of(events: tuple[object, ...]) -> UsageMetered:
    return next(e for e in events if isinstance(e, UsageMetered))


def credits(ucr: int) -> str:
    """µcr as credits with six places, written out here rather than borrowed from the code under test."""
    return f"{ucr // 1_000_000}.{ucr % 1_000_000:06d}"


async def read_csv(engine: AsyncEngine, account: str, start: str | None = None, end: str | None = None,
                   chunk: int = x.CHUNK) -> list[list[str]]:
    export = await x.open_export(engine, account, x.parse_range(start, end))
    body = "".join([piece async for piece in x.csv_chunks(engine, export, chunk)])
    assert body.endswith("\r\n")
    return list(csv.reader(io.StringIO(body, newline="")))


async def test_a_known_set_matches_row_for_row(engine: AsyncEngine, ledger: Ledger, clock: ManualClock,
                                               open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=100 * 1_000_000)
    clock.set(T0 + timedelta(hours=3))  # the metered usage below happened earlier
    awkward = [
        ("nightly, then \"weekly\"", "bot\nline two", "gpt-4o"),
        ("=HYPERLINK(\"http://x\")", "+cmd", "gpt-4o"),
        ("-1+2", "@SUM(A1)", "claude-haiku"),
        ("\tindented", "plain agent", "gpt-4o"),
        ("ok", "crlf\r\ninside", "gpt-4o"),
    ]
    expected: list[list[str]] = []
    for i, (flow, agent, op) in enumerate(awkward):
        when = T0 + timedelta(minutes=10 * i, microseconds=250 if i == 1 else 0)
        out = await ledger.execute(c.Meter(
            account_id=account, operation=op, quantities={"input_tokens": 1000 + i, "output_tokens": 10 * i},
            attribution=Attribution(flow=flow, agent=agent), occurred_at=when, idempotency_key=f"m-{i}"))
        u = usage_of(out.events)
        safe = ["'" + v if v[0] in "=+-@\t\r" else v for v in (flow, agent, op)]
        date = "2026-11-01T09:10:00.000250Z" if i == 1 else f"2026-11-01T09:{10 * i:02d}:00Z"
        expected.append([date, *safe, str(1000 + i), str(10 * i), credits(u.cost_ucr), "metered"])
    # Backfilled usage that happened before all of them comes first.
    out = await ledger.execute(c.Meter(account_id=account, operation="sms", quantity=2,
                                       occurred_at=T0 - timedelta(days=1), idempotency_key="late"))
    expected.insert(0, ["2026-10-31T09:00:00Z", "", "", "sms", "0", "0", credits(usage_of(out.events).cost_ucr),
                        "metered"])
    # A gated charge, now (12:00), without attribution; recorded before the debt below (402 after it).
    out = await ledger.execute(c.Charge(account_id=account, operation="email", quantity=300, idempotency_key="ch"))
    charged = ["2026-11-01T12:00:00Z", "", "", "email", "0", "0", credits(usage_of(out.events).cost_ucr), "charged"]
    # Usage past every credit: part of it became debt.
    out = await ledger.execute(c.Meter(
        account_id=account, operation="gpt-4o", quantities={"input_tokens": 10**11, "output_tokens": 1},
        attribution=Attribution(flow="big"), occurred_at=T0 + timedelta(hours=2), idempotency_key="debt"))
    assert usage_of(out.events).debt_added_ucr > 0
    expected.append(["2026-11-01T11:00:00Z", "big", "", "gpt-4o", str(10**11), "1",
                     credits(usage_of(out.events).cost_ucr), "in_debt"])
    expected.append(charged)
    # Another account's usage never shows.
    other = await open_account()
    await ledger.execute(c.Meter(account_id=other, operation="sms", quantity=1, idempotency_key="o"))

    await fold_all(engine)
    assert await read_csv(engine, account) == [HEADER, *expected]
    assert await read_csv(engine, account, chunk=2) == [HEADER, *expected]


async def test_the_range_is_from_inclusive_to_exclusive_and_a_date_alone_means_its_whole_day(
        engine: AsyncEngine, ledger: Ledger, open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=100 * 1_000_000)
    days = [datetime(2026, 10, d, 12, tzinfo=UTC) for d in (29, 30, 31)] + [datetime(2026, 11, 1, tzinfo=UTC)]
    for i, when in enumerate(days):
        await ledger.execute(c.Meter(account_id=account, operation="sms", quantity=1, occurred_at=when,
                                     idempotency_key=f"d-{i}"))
    await fold_all(engine)

    async def dates(start: str | None, end: str | None) -> list[str]:
        return [row[0] for row in (await read_csv(engine, account, start, end))[1:]]

    assert await dates("2026-10-30", "2026-10-31") == ["2026-10-30T12:00:00Z", "2026-10-31T12:00:00Z"]
    assert await dates("2026-10-30T12:00:00Z", "2026-10-31T12:00:00+00:00") == ["2026-10-30T12:00:00Z"]
    assert await dates("2026-10-31T13:00:00+01:00", None) == ["2026-10-31T12:00:00Z", "2026-11-01T00:00:00Z"]
    assert await dates(None, "2026-10-29") == ["2026-10-29T12:00:00Z"]
    assert await dates("2026-11-01T00:00:00Z", "2026-11-01T00:00:00Z") == []


@pytest.mark.parametrize(("start", "end", "says"), [
    ("2026-11-02", "2026-11-01", "after"),
    ("yesterday", None, "from"),
    (None, "2026-13-01", "to"),
    ("2026-11-01T09:00:00", None, "offset"),
    ("0001-01-01T00:00:00+05:00", None, "range"),
])
def test_a_bad_range_is_refused(start: str | None, end: str | None, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says):
        x.parse_range(start, end)


async def test_an_unknown_account_is_a_404(engine: AsyncEngine, ledger: Ledger) -> None:
    with pytest.raises(UnknownAccount):
        await x.open_export(engine, "nobody-here", x.Range())


async def test_an_export_reads_the_cut_it_began_at(engine: AsyncEngine, ledger: Ledger,
                                                   open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=100 * 1_000_000)
    await ledger.execute(c.Meter(account_id=account, operation="sms", quantity=1, occurred_at=T0,
                                 idempotency_key="first"))
    await fold_all(engine)
    export = await x.open_export(engine, account, x.Range())
    assert export.freshness.lag_ms == 0
    # Folded after the export began, and earlier in time: it neither joins nor shifts the export.
    await ledger.execute(c.Meter(account_id=account, operation="sms", quantity=1,
                                 occurred_at=T0 - timedelta(hours=1), idempotency_key="second"))
    await fold_all(engine)
    rows = [r async for page in x.pages(engine, export) for r in page]
    assert [r.occurred_at for r in rows] == [T0]
    assert await x.count_rows(engine, export) == 1


async def test_five_thousand_rows_stream_in_pages_each_once_in_order(engine: AsyncEngine, ledger: Ledger,
                                                                     open_account: OpenAccount) -> None:
    account = await open_account(credits_ucr=10**12)
    n = 5000
    early = T0 - timedelta(hours=1)
    # Three events a second, so pages end in the middle of a tie on occurred_at.
    commands = [c.Meter(account_id=account, operation="sms", quantity=1 + i % 7,
                        attribution=Attribution(run=f"r{i}", agent=f"a{i % 5}"),
                        occurred_at=early + timedelta(seconds=i // 3), idempotency_key=f"k{i}") for i in range(n)]
    for start in range(0, n, 1000):
        results = await ledger.execute_many(commands[start:start + 1000])
        assert [r for r in results if isinstance(r, Exception)] == []
    await fold_all(engine)
    export = await x.open_export(engine, account, x.Range())
    assert await x.count_rows(engine, export) == n
    sizes: list[int] = []
    seen: list[tuple[datetime, int]] = []
    async for page in x.pages(engine, export, chunk=700):
        sizes.append(len(page))
        seen += [(r.occurred_at, r.version) for r in page]
    assert sizes == [700] * 7 + [100]
    assert len(set(seen)) == n
    assert seen == sorted(seen)
    assert [when for when, _ in seen] == [early + timedelta(seconds=i // 3) for i in range(n)]
    lines = await read_csv(engine, account, chunk=700)
    assert len(lines) == n + 1
    assert [line[2] for line in lines[1:]] == [f"a{i % 5}" for i in range(n)]
