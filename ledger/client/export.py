"""The CSV export for accounting (``GET /v1/accounts/{account}/export.csv``): the ``Call`` that fetches it
whole (``client.credits.export()``), and what ``client.credits.export_to(file)`` needs to stream it
into a file as it arrives, in both clients.

A streamed export is one attempt: a CSV half-received is not sent again from its start behind the
caller's back. Written to a path, it goes to ``<path>.part`` first and is renamed when complete,
so a failure never leaves half a file under the name asked for.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import BinaryIO

import httpx

from ledger.client.calls import Call, _account_path
from ledger.client.errors import LedgerConnectionError

#: What ``from_`` and ``to`` take: ISO-8601 text, a date (UTC; as ``to``, its whole day is
#: included), or an aware datetime.
Bound = str | date | datetime | None
Target = str | os.PathLike[str] | BinaryIO


@dataclass(frozen=True)
class Exported:
    """What ``export_to`` wrote, and how fresh the read model it came from was."""

    bytes_written: int
    as_of_position: int
    lag_ms: int


def _bound(name: str, value: Bound) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware (a naive datetime names no instant)")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{name} must be a str, date or datetime, not {type(value).__name__}")


def _text(response: httpx.Response) -> str:
    return response.text


def export(start: Bound = None, end: Bound = None) -> Call[str]:
    params: dict[str, str | int] = {}
    for name, value in (("from", _bound("from_", start)), ("to", _bound("to", end))):
        if value is not None:
            params[name] = value
    return Call("GET", _account_path(None, "/export.csv"), _text, params=params)


@contextlib.contextmanager
def target(file: Target) -> Iterator[BinaryIO]:
    """Where the bytes go: a path (through ``<path>.part``, renamed when complete) or an open binary file."""
    if not isinstance(file, str | os.PathLike):
        yield file
        return
    path = Path(file)
    partial = path.with_name(path.name + ".part")
    try:
        with partial.open("wb") as out:
            yield out
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def exported(response: httpx.Response, size: int) -> Exported:
    return Exported(size, int(response.headers.get("X-As-Of-Position", 0)), int(response.headers.get("X-Lag-Ms", 0)))


def connection_failed(call: Call[str], exc: Exception) -> LedgerConnectionError:
    return LedgerConnectionError(f"{call.method} {call.path}: the export was not received whole: {exc!r}")
