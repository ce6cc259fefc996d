"""The per-account hash chain: each event's hash covers the previous one, so an edit shows.

The canonical text is the standard library's ``json.dumps(..., sort_keys=True,
separators=(",", ":"))`` (ASCII-only, every other character escaped). orjson writes the same
bytes far faster whenever its output is printable ASCII, so it is tried first and the standard
library writes the rest: every hash ever stored stays reproducible, whichever path made it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

GENESIS = b"\x00" * 32


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _same_as_stdlib(out: bytes) -> bool:
    """orjson's output is the standard library's exactly when it is printable ASCII: orjson keeps
    non-ASCII characters and DEL raw where ``ensure_ascii`` escapes them."""
    return out.isascii() and b"\x7f" not in out


def event_hash(
    prev_hash: bytes,
    *,
    account_id: str,
    version: int,
    event_id: UUID,
    type_: str,
    schema_version: int,
    idempotency_key: str | None,
    amount_ucr: int,
    balance_after_ucr: int,
    occurred_at: datetime,
    recorded_at: datetime,
    data: dict[str, Any] | None = None,
    data_json: str | None = None,
) -> bytes:
    """sha256(prev_hash || canonical JSON of the stored row): what ``verify`` recomputes.

    ``data_json`` is ``canonical_json(data)`` when the caller already has it (the writer does).
    """
    if data_json is None:
        data_json = canonical_json(data)
    occurred, recorded = _utc(occurred_at), _utc(recorded_at)
    # Byte for byte the canonical JSON of the whole row as one list, data last. orjson writes a
    # UUID as str() does and a UTC datetime as isoformat() does.
    try:
        body = orjson.dumps([account_id, version, event_id, type_, schema_version, idempotency_key,
                             amount_ucr, balance_after_ucr, occurred, recorded, orjson.Fragment(data_json)])
    except TypeError:  # e.g. an integer beyond 64 bits: the standard library below
        body = b""
    if not body or not _same_as_stdlib(body):
        head = json.dumps([account_id, version, str(event_id), type_, schema_version, idempotency_key,
                           amount_ucr, balance_after_ucr, occurred.isoformat(), recorded.isoformat()],
                          separators=(",", ":"))
        body = f"{head[:-1]},{data_json}]".encode()
    return hashlib.sha256(prev_hash + body).digest()


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, ASCII: the same text for the same data, however it was built.

    For JSON data without floats (event data holds none: money and quantities are integers).
    """
    try:
        out = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers beyond 64 bits, non-string keys: the standard library decides
        return _stdlib(value)
    return out.decode() if _same_as_stdlib(out) else _stdlib(value)


def _stdlib(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
