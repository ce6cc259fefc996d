"""Idempotency keys, every rule in one place. Pure: no I/O.

A command may carry a key. The first command with a key on an account records its result under
the key with the request's fingerprint; a later command with the same key and the same request
gets that first result again (a replay, nothing appended), with another request a 409
(``IdempotencyConflict``). Here:

- ``normal_key``: the one spelling of a key, whatever carried it (a header, a body, a usage item,
  the queue); ``request_key`` picks the request's key from its header and its body.
- ``fingerprint``: what a replay must match.
- ``KeyBook``: the replay-or-conflict decision for one batch, on the keys stored before it and
  those it records itself (the batch planner, ``ledger.planner``, applies it).

The store loads the batch's stored keys (``credits_lock_and_load``, migration 0009) and writes the
new ones (``ledger.store.write``); a replay of a stored key reads its first result back after the
commit (``ledger.store.connections``).
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel

from ledger.chain import canonical_json
from ledger.errors import IdempotencyConflict, InvalidRequest, MalformedRequest

#: The longest idempotency key, in characters once normalised.
MAX_KEY = 255


def normal_key(raw: str) -> str:
    """The one rule for an idempotency key, whatever carried it (a header, a body, a usage item, the
    queue): surrounding spaces and tabs dropped, as HTTP drops them from a header's value, and
    Unicode NFC, so one visible key is one key however it was typed. ``ValueError`` if blank or
    longer than ``MAX_KEY``."""
    key = unicodedata.normalize("NFC", raw.strip(" \t"))
    if not key:
        raise ValueError("an idempotency key must not be blank")
    if len(key) > MAX_KEY:
        raise ValueError(f"an idempotency key has at most {MAX_KEY} characters, not {len(key)}")
    return key


def as_normal_key(value: object) -> object:
    """``normal_key`` as a pydantic before-validator (anything but a string is left to the type check)."""
    return normal_key(value) if isinstance(value, str) else value


def request_key(header: str | None, body_key: str | None) -> str | None:
    """A request's key: its ``Idempotency-Key`` header's or its body's (both given, they must
    agree), by ``normal_key``. The header's bytes are UTF-8: Starlette hands them over decoded as
    Latin-1, so they are taken back to bytes first."""
    try:
        if header is not None:
            try:
                header = header.encode("latin-1").decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedRequest("the Idempotency-Key header is not UTF-8") from None
            header = normal_key(header)
        if body_key is not None:
            body_key = normal_key(body_key)
    except ValueError as exc:
        raise InvalidRequest(f"Idempotency-Key: {exc}") from None
    if header is not None and body_key is not None and header != body_key:
        raise InvalidRequest("the Idempotency-Key header and the body's idempotency_key differ")
    return header if header is not None else body_key


def fingerprint(command: BaseModel, added_later: tuple[str, ...] = ()) -> bytes:
    """sha256 of the request without its key: equal for a true replay, different otherwise.

    The command's type and every field but the key, as the chain's canonical JSON: the bytes of
    every key already stored (``idempotency_keys.request_hash``), so this must never change.
    Fields in ``added_later`` (optional ones a command gained after keys were stored) count only
    when set, so a request stored before they existed still replays.
    """
    unset = {name for name in added_later if getattr(command, name) is None}
    body = command.model_dump(mode="json", exclude={"idempotency_key", *unset})
    body["command"] = type(command).__name__
    return hashlib.sha256(canonical_json(body).encode()).digest()


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A key recorded by an earlier transaction: its request's fingerprint and the account's
    versions its first result appended (``first > last`` when it appended nothing)."""

    fingerprint: bytes
    first_version: int
    last_version: int


@dataclass(frozen=True, slots=True)
class ReplayStored:
    """Answer with the first result, committed before: the account's events ``first..last``."""

    account_id: str
    first_version: int
    last_version: int


@dataclass(frozen=True, slots=True)
class ReplayInBatch:
    """Answer with the first result, recorded earlier in the same batch by command ``index``."""

    index: int


def conflict(key: str) -> IdempotencyConflict:
    return IdempotencyConflict(f"idempotency key {key!r} was used for a different request")


class KeyBook:
    """The keys a batch may meet: those stored before it, and those it records as it goes."""

    __slots__ = ("_recorded", "_stored", "new")

    def __init__(self, stored: Mapping[tuple[str, str], StoredKey]) -> None:
        self._stored = stored
        self._recorded: dict[tuple[str, str], tuple[bytes, int]] = {}
        #: Keys to store: (account, key, fingerprint, first version, last version).
        self.new: list[tuple[str, str, bytes, int, int]] = []

    def check(self, account_id: str, key: str,
              fp: bytes) -> ReplayStored | ReplayInBatch | IdempotencyConflict | None:
        """What a command with ``key`` and fingerprint ``fp`` gets: ``None`` when the key is new
        (decide it), else a replay of the first result or a conflict."""
        prior = self._stored.get((account_id, key))
        if prior is not None:
            if prior.fingerprint != fp:
                return conflict(key)
            return ReplayStored(account_id, prior.first_version, prior.last_version)
        earlier = self._recorded.get((account_id, key))
        if earlier is not None:
            return conflict(key) if earlier[0] != fp else ReplayInBatch(earlier[1])
        return None

    def record(self, account_id: str, key: str, fp: bytes, index: int, first_version: int,
               last_version: int) -> None:
        """Command ``index`` succeeded with ``key``: later ones replay it, and it is stored."""
        self._recorded[(account_id, key)] = (fp, index)
        self.new.append((account_id, key, fp, first_version, last_version))
