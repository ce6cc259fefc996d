"""The chain's canonical JSON: orjson's fast path writes exactly the standard library's bytes.

The reference below is the chain as first written (standard library only): every hash stored by
it must still verify, so the two must agree on every input, not only on typical events.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.chain import canonical_json, event_hash


def reference_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def reference_hash(prev: bytes, row: list[Any], data: Any) -> bytes:
    head = json.dumps(row, separators=(",", ":"))
    return hashlib.sha256(prev + f"{head[:-1]},{reference_json(data)}]".encode()).digest()


# Any text: control characters, DEL, non-ASCII, surrogate-free astral characters.
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
ints = st.integers() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
json_values = st.recursive(
    st.none() | st.booleans() | ints | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20,
)
zones = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
moments = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=zones)


@settings(max_examples=400)
@given(json_values)
def test_canonical_json_is_the_standard_librarys(value: Any) -> None:
    assert canonical_json(value) == reference_json(value)


def test_canonical_json_edges() -> None:
    for value in ["\x7f", "é", "\u2028", "\x00\x1f", {"b": 1, "a": 2}, 2**64, -(2**63) - 1, {"é": "x"}]:
        assert canonical_json(value) == reference_json(value)


@settings(max_examples=300)
@given(prev=st.binary(min_size=32, max_size=32), account_id=texts, version=ints, event_id=st.uuids(),
       type_=texts, idempotency_key=st.none() | texts, amount=ints, balance=ints, occurred=moments,
       recorded=moments, data=st.dictionaries(texts, json_values, max_size=4))
def test_event_hash_is_the_reference(prev: bytes, account_id: str, version: int, event_id: UUID, type_: str,
                                     idempotency_key: str | None, amount: int, balance: int,
                                     occurred: datetime, recorded: datetime, data: dict[str, Any]) -> None:
    row = [account_id, version, str(event_id), type_, 1, idempotency_key, amount, balance,
           occurred.astimezone(UTC).isoformat(), recorded.astimezone(UTC).isoformat()]
    expected = reference_hash(prev, row, data)
    fields: dict[str, Any] = dict(
        account_id=account_id, version=version, event_id=event_id, type_=type_, schema_version=1,
        idempotency_key=idempotency_key, amount_ucr=amount, balance_after_ucr=balance, occurred_at=occurred,
        recorded_at=recorded)
    assert event_hash(prev, **fields, data=data) == expected
    assert event_hash(prev, **fields, data_json=canonical_json(data)) == expected
