"""API keys on the write side: issued on the account's stream, idempotent, revocable, verify-clean."""

from __future__ import annotations

import pytest

from ledger.errors import IdempotencyConflict, NotFound
from ledger.keys import authenticate, create_account_key, get_key, revoke_account_key
from ledger.service import Ledger
from ledger.verify import verify_account
from tests.ledger.conftest import OpenAccount


async def test_a_replayed_creation_returns_the_first_key_without_its_secret(
        ledger: Ledger, open_account: OpenAccount) -> None:
    acct = await open_account(credits_ucr=5_000_000)
    new, info = await create_account_key(ledger, acct, "member", "ci", idempotency_key="k1")
    assert new is not None and info.key_id == new.key_id
    again, info2 = await create_account_key(ledger, acct, "member", "ci", idempotency_key="k1")
    assert again is None and info2 == info
    with pytest.raises(IdempotencyConflict):
        await create_account_key(ledger, acct, "admin", "ci", idempotency_key="k1")
    assert (await authenticate(ledger.engine, new.key)) is not None
    balance = await ledger.balance(acct, recent=3)
    assert balance.balance_ucr == 5_000_000, "keys move no money"
    assert [e.type for e in balance.recent][:1] == ["ApiKeyCreated"]
    report = await verify_account(ledger.engine, acct)
    assert report.clean, report.mismatches


async def test_revocation_is_scoped_to_the_account(ledger: Ledger, open_account: OpenAccount) -> None:
    a, b = await open_account(), await open_account()
    new, info = await create_account_key(ledger, a, "admin", "ops")
    assert new is not None
    with pytest.raises(NotFound):
        await revoke_account_key(ledger, b, info.key_id)
    assert (await authenticate(ledger.engine, new.key)) is not None, "another account cannot revoke it"
    await revoke_account_key(ledger, a, info.key_id)
    assert (await authenticate(ledger.engine, new.key)) is None
    assert (await get_key(ledger.engine, a, info.key_id)).revoked_at is not None
    assert (await verify_account(ledger.engine, a)).clean
