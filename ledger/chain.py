"""The per-account hash chain: each event's hash covers the previous one, so an edit shows."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

GENESIS = b"\x00" * 32


def _ts(value: datetime) -> str:
    return (value if value.tzinfo is UTC else value.astimezone(UTC)).isoformat()


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
    head = json.dumps(
        [account_id, version, str(event_id), type_, schema_version, idempotency_key, amount_ucr,
         balance_after_ucr, _ts(occurred_at), _ts(recorded_at)],
        separators=(",", ":"),
    )
    if data_json is None:
        data_json = canonical_json(data)
    # Byte for byte the canonical JSON of the whole row as one list, data last.
    body = f"{head[:-1]},{data_json}]"
    return hashlib.sha256(prev_hash + body.encode()).digest()


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces: the same text for the same data, however it was built."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
