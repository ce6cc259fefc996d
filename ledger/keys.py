"""API keys: ``cl_<env>_<id>_<secret>``, shown once, stored as a SHA-256 of the secret.

The id is the visible prefix's tail and the lookup key; the secret carries 160 random bits, so a
plain SHA-256 (not a slow password hash) is enough: there is nothing to brute-force. Operator
keys act on every account; account keys carry a role and reach one account only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger.errors import Forbidden, NotFound, UnknownAccount
from ledger.service import Ledger

Role = Literal["operator", "admin", "member", "read"]
AccountRole = Literal["admin", "member", "read"]

#: What each role may do on its account; an operator may do everything on every account.
_RANK: dict[str, int] = {"read": 0, "member": 1, "admin": 2, "operator": 3}

_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_KEY = re.compile(r"^cl_(?P<env>[a-z]+)_(?P<id>[a-z2-7]{12})_(?P<secret>[a-z2-7]{32})$")


@dataclass(frozen=True)
class NewKey:
    """A key just made: ``key`` is shown once and never stored."""

    key_id: str
    prefix: str
    key: str
    secret_sha256: str


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, role and account (``None`` for an operator)."""

    key_id: str
    role: Role
    account_id: str | None

    def may_access(self, account_id: str) -> bool:
        return self.account_id is None or self.account_id == account_id

    def require(self, role: Role, account_id: str | None) -> None:
        """Refuse with 404 when the account is not this key's (never reveal it exists), 403 when too weak."""
        if account_id is not None and not self.may_access(account_id):
            # The same answer as for an account that does not exist.
            raise UnknownAccount(account_id)
        if _RANK[self.role] < _RANK[role]:
            raise Forbidden(f"this key's role ({self.role}) may not do this; it needs {role}")


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    prefix: str
    role: Role
    name: str
    account_id: str | None
    created_at: datetime
    revoked_at: datetime | None


def _token(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def new_key(env: str = "live") -> NewKey:
    """A fresh random key for environment ``env`` (``live`` or ``test``)."""
    key_id, secret = _token(12), _token(32)
    prefix = f"cl_{env}_{key_id}"
    return NewKey(key_id, prefix, f"{prefix}_{secret}", hashlib.sha256(secret.encode()).hexdigest())


def parse_key(raw: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed key, else ``None``."""
    m = _KEY.match(raw)
    return (m["id"], m["secret"]) if m else None


async def authenticate(engine: AsyncEngine, raw: str) -> Principal | None:
    """The principal of an unrevoked key, or ``None`` for anything else (one answer: 401)."""
    parsed = parse_key(raw)
    if parsed is None:
        return None
    key_id, secret = parsed
    async with engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT role, account_id, secret_sha256 FROM api_keys WHERE key_id = :k AND revoked_at IS NULL"),
            {"k": key_id})).first()
    if row is None:
        return None
    if not hmac.compare_digest(bytes(row.secret_sha256), hashlib.sha256(secret.encode()).digest()):
        return None
    return Principal(key_id, row.role, row.account_id)


async def create_operator_key(engine: AsyncEngine, name: str, *, env: str = "live") -> tuple[NewKey, datetime]:
    """An operator key (all accounts). Not part of any account's stream: it belongs to none."""
    key = new_key(env)
    async with engine.begin() as conn:
        created_at = (await conn.execute(text(
            "INSERT INTO api_keys (key_id, account_id, role, name, prefix, secret_sha256, created_at)"
            " VALUES (:k, NULL, 'operator', :n, :p, :s, now()) RETURNING created_at"),
            {"k": key.key_id, "n": name, "p": key.prefix, "s": bytes.fromhex(key.secret_sha256)})).scalar_one()
    return key, created_at


async def create_account_key(ledger: Ledger, account_id: str, role: AccountRole, name: str, *,
                             env: str = "live", idempotency_key: str | None = None) -> tuple[NewKey | None, KeyInfo]:
    """An account key, recorded as ``ApiKeyCreated`` on the account's stream.

    A replay of the same idempotency key returns the first key's info and ``None`` for the
    secret: it was shown once and is not kept.
    """
    key = new_key(env)
    cmd = c.CreateApiKey(account_id=account_id, key_id=key.key_id, prefix=key.prefix, role=role, name=name,
                         secret_sha256=key.secret_sha256, idempotency_key=idempotency_key)
    if idempotency_key is not None:
        # The key id is random, so a true replay would look like a different request: compare
        # what the caller chose (role, name) and reuse the first key id when they match.
        first = await _first_key_for(ledger.engine, account_id, idempotency_key)
        if first is not None:
            cmd = cmd.model_copy(update={"key_id": first[0], "prefix": first[1], "secret_sha256": first[2]})
    outcome = await ledger.execute(cmd)
    info = await get_key(ledger.engine, account_id, cmd.key_id)
    return (None if outcome.replayed else key), info


async def _first_key_for(engine: AsyncEngine, account_id: str, idempotency_key: str) -> tuple[str, str, str] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT k.key_id, k.prefix, k.secret_sha256 FROM events e"
            " JOIN api_keys k ON k.key_id = e.data->>'key_id' AND k.account_id = e.account_id"
            " WHERE e.account_id = :a AND e.idempotency_key = :i AND e.type = 'ApiKeyCreated'"),
            {"a": account_id, "i": idempotency_key})).first()
    return None if row is None else (row.key_id, row.prefix, bytes(row.secret_sha256).hex())


async def get_key(engine: AsyncEngine, account_id: str | None, key_id: str) -> KeyInfo:
    """One key of ``account_id`` (``None``: an operator key); 404 when it is not there."""
    async with engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT key_id, prefix, role, name, account_id, created_at, revoked_at FROM api_keys"
            " WHERE key_id = :k AND account_id IS NOT DISTINCT FROM :a"), {"k": key_id, "a": account_id})).first()
    if row is None:
        raise NotFound(f"api key {key_id!r} not found")
    return KeyInfo(row.key_id, row.prefix, row.role, row.name, row.account_id, row.created_at, row.revoked_at)


async def find_key(engine: AsyncEngine, key_id: str) -> KeyInfo:
    """The key ``key_id``, operator or account key; 404 when there is none."""
    async with engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT key_id, prefix, role, name, account_id, created_at, revoked_at FROM api_keys"
            " WHERE key_id = :k"), {"k": key_id})).first()
    if row is None:
        raise NotFound(f"api key {key_id!r} not found")
    return KeyInfo(row.key_id, row.prefix, row.role, row.name, row.account_id, row.created_at, row.revoked_at)


async def list_keys(engine: AsyncEngine, account_id: str | None) -> list[KeyInfo]:
    """The account's keys (``None``: the operator keys), newest first, revoked ones included."""
    where = "account_id = :a" if account_id is not None else "account_id IS NULL"
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT key_id, prefix, role, name, account_id, created_at, revoked_at FROM api_keys"
            f" WHERE {where} ORDER BY created_at DESC, key_id"), {"a": account_id})).all()
    return [KeyInfo(r.key_id, r.prefix, r.role, r.name, r.account_id, r.created_at, r.revoked_at) for r in rows]


async def revoke_operator_key(engine: AsyncEngine, key_id: str) -> None:
    """Revoke an operator key (it belongs to no stream: the table only); twice is a no-op, an
    account key's id a 404."""
    async with engine.begin() as conn:
        done = (await conn.execute(text(
            "UPDATE api_keys SET revoked_at = now() WHERE key_id = :k AND account_id IS NULL"
            " AND revoked_at IS NULL RETURNING key_id"), {"k": key_id})).first()
    if done is None:
        await get_key(engine, None, key_id)  # 404 unless it is an operator key revoked before


async def revoke_account_key(ledger: Ledger, account_id: str, key_id: str) -> None:
    """Revoke an account key (``ApiKeyRevoked``); revoking twice is a no-op, another account's key a 404."""
    info = await get_key(ledger.engine, account_id, key_id)
    if info.revoked_at is not None:
        return
    # The derived key makes two racing revocations append one event.
    await ledger.execute(c.RevokeApiKey(account_id=account_id, key_id=key_id,
                                        idempotency_key=f"api-key:{key_id}:revoke"))
