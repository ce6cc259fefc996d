"""The SDK's CSV export against a live server, sync and async: ``credits.export()`` as text and
``credits.export_to()`` streamed into a path or a binary file, row for row with usage recorded
through the SDK (``workflow`` as the attribution's flow); bad ranges raise and write nothing."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from ledger.client import AsyncClient, Client, InvalidRequestError, LedgerConnectionError
from ledger.db import make_engine
from projections.runner import Projections
from tests.ledger.client.conftest import Live, LiveAccount, NewAccount

HEADER = ["date", "workflow", "agent", "model", "input_tokens", "output_tokens", "credits", "status"]
DAY = datetime(2026, 10, 20, tzinfo=UTC)


async def catch_up(url: str) -> None:
    engine = make_engine(url, pool_size=2)
    try:
        await Projections(engine).catch_up()
    finally:
        await engine.dispose()


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def credits(ucr: int) -> str:
    return f"{ucr // 1_000_000}.{ucr % 1_000_000:06d}"


def record(client: Client, acct: LiveAccount) -> list[list[str]]:
    """Usage on three days of October, through the SDK; the rows the export should hold."""
    usage = [("nightly, \"full\"", "bot\nline 2", 0), ("=cmd|' /C calc'!A0", "@ops", 1), ("-5", "+x", 2)]
    expected = []
    for flow, agent, day in usage:
        when = DAY + timedelta(days=day, hours=6)
        result = client.usage.record("gpt-4o", quantities={"input_tokens": 1000, "output_tokens": 100},
                                     attribution={"workflow": flow, "agent": agent}, occurred_at=when)
        expected.append([when.isoformat().replace("+00:00", "Z"), "'" + flow if flow[0] in "=-" else flow,
                         "'" + agent if agent[0] in "@+" else agent, "gpt-4o", "1000", "100",
                         credits(result.amount_ucr or 0), "metered"])
    return expected


def test_export_as_text_and_into_files(live: Live, new_account: NewAccount, sdk_database_url: str,
                                       tmp_path: Path) -> None:
    acct = new_account("100")
    with Client(live.base_url, acct.member_key) as member:
        expected = record(member, acct)
    asyncio.run(catch_up(sdk_database_url))
    with Client(live.base_url, acct.read_key) as reader:
        text = reader.credits.export(from_=date(2026, 10, 1), to="2026-10-31")
        assert rows(text) == [HEADER, *expected]
        assert rows(reader.credits.export(from_=DAY + timedelta(days=1), to=DAY + timedelta(days=2))) == \
            [HEADER, expected[1]]

        path = tmp_path / "usage.csv"
        done = reader.credits.export_to(path, from_="2026-10-01", to="2026-10-31")
        assert path.read_bytes().decode() == text
        assert done.bytes_written == len(text.encode())
        assert done.as_of_position > 0 and done.lag_ms == 0
        assert not (tmp_path / "usage.csv.part").exists()
        buffer = io.BytesIO()
        reader.credits.export_to(buffer, from_="2026-10-01", to="2026-10-31")
        assert buffer.getvalue().decode() == text

        with pytest.raises(InvalidRequestError, match="after"):
            reader.credits.export(from_="2026-10-31", to="2026-10-01")
        with pytest.raises(InvalidRequestError, match="offset"):
            reader.credits.export_to(tmp_path / "never.csv", from_="2026-10-01T00:00:00")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["usage.csv"]
        with pytest.raises(ValueError, match="timezone"):
            reader.credits.export(from_=datetime(2026, 10, 1))  # naive: the point of the check


async def test_async_export_as_text_and_into_a_file(live: Live, new_account: NewAccount, sdk_database_url: str,
                                                    tmp_path: Path) -> None:
    acct = new_account("100")
    with Client(live.base_url, acct.member_key) as member:
        expected = record(member, acct)
    await catch_up(sdk_database_url)
    async with AsyncClient(live.base_url, acct.read_key) as reader:
        text = await reader.credits.export(to=date(2026, 10, 31))
        assert rows(text)[0] == HEADER
        # The fixture burnt the signup credits today: outside this range.
        assert rows(text)[1:] == expected
        done = await reader.credits.export_to(tmp_path / "usage.csv", to=date(2026, 10, 31))
        assert (tmp_path / "usage.csv").read_bytes().decode() == text
        assert done.bytes_written == len(text.encode())
        with pytest.raises(InvalidRequestError):
            await reader.credits.export_to(tmp_path / "never.csv", from_="soon")
        assert not (tmp_path / "never.csv").exists()


class _CutShort(httpx.SyncByteStream):
    """The server's body, lost after its first piece."""

    def __init__(self, inner: httpx.SyncByteStream) -> None:
        self.inner = inner

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.inner:
            yield piece
            raise httpx.ReadError("connection lost mid-body (scripted)")

    def close(self) -> None:
        self.inner.close()


class CutExports(httpx.BaseTransport):
    """The real transport, except that an export's body breaks off after its first piece."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if not request.url.path.endswith("/export.csv"):
            return response
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(response.status_code, headers=response.headers, stream=_CutShort(response.stream),
                              request=request)

    def close(self) -> None:
        self.inner.close()


def test_an_export_cut_short_raises_and_leaves_the_file_as_it_was(live: Live, new_account: NewAccount,
                                                                  sdk_database_url: str, tmp_path: Path) -> None:
    acct = new_account("100")
    with Client(live.base_url, acct.member_key) as member:
        record(member, acct)
    asyncio.run(catch_up(sdk_database_url))
    path = tmp_path / "usage.csv"
    path.write_text("last month's export\n")
    with (Client(live.base_url, acct.read_key, transport=CutExports()) as reader,
          pytest.raises(LedgerConnectionError, match="not received whole")):
        reader.credits.export_to(path)
    assert path.read_text() == "last month's export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["usage.csv"]
