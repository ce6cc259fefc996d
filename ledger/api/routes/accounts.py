"""Accounts and API keys."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from ledger import commands as c
from ledger.api import render
from ledger.api import schemas as s
from ledger.api.body import JsonBodyRoute
from ledger.api.deps import RT, Admin, IdemHeader, Operator, Reader, idempotency_key
from ledger.api.deps import replayed as _replayed
from ledger.keys import KeyInfo, create_account_key, list_keys, revoke_account_key, revoke_operator_key
from ledger.store import new_uuid

router = APIRouter(tags=["accounts"], responses=s.ERRORS, route_class=JsonBodyRoute)


async def _account(rt: RT, account_id: str) -> s.AccountOut:
    return render.account(await rt.ledger.account(account_id))


@router.post("/v1/accounts", status_code=status.HTTP_201_CREATED, response_model=s.AccountOut)
async def open_account(body: s.AccountIn, rt: RT, who: Operator, response: Response,
                       idem: IdemHeader = None) -> s.AccountOut:
    """Open an account (operator). Signup credits and the first allowance are granted per plan."""
    key = idempotency_key(idem, body.idempotency_key)
    # Keys are scoped to an account, so an id the server picks must come from the key: a retry
    # then names the same account and replays instead of opening a second one.
    account_id = body.id or (f"acct_{hashlib.sha256(f'open:{key}'.encode()).hexdigest()[:32]}" if key
                             else f"acct_{new_uuid().hex}")
    outcome = await rt.ledger.execute(c.OpenAccount(account_id=account_id, name=body.name, plan=body.plan,
                                                    idempotency_key=key))
    _replayed(response, outcome.replayed)
    return await _account(rt, account_id)


@router.get("/v1/accounts", response_model=s.AccountPage)
async def list_accounts(
    rt: RT, who: Operator, limit: Annotated[int, Query(ge=1, le=500, description="Accounts per page (1-500).")] = 50,
    cursor: Annotated[str | None, Query(max_length=200, description="A page's `next_cursor`: the accounts after it.")
                      ] = None,
) -> s.AccountPage:
    """Accounts in id order with their exact balances (operator): the dashboard's operator view."""
    rows = await rt.ledger.account_summaries(limit=limit + 1, after=cursor)
    more = len(rows) > limit
    rows = rows[:limit]
    return s.AccountPage(data=[render.account_summary(a) for a in rows], has_more=more,
                         next_cursor=rows[-1].account_id if more else None)


@router.get("/v1/accounts/{account}", response_model=s.AccountOut)
async def get_account(account: str, rt: RT, who: Reader) -> s.AccountOut:
    """The account: id, name, plan, status and settings."""
    return await _account(rt, account)


def _key_out(info: KeyInfo, key: str | None = None) -> s.ApiKeyOut:
    return s.ApiKeyOut(id=info.key_id, prefix=info.prefix, role=info.role, name=info.name,
                       created_at=info.created_at, revoked_at=info.revoked_at, key=key)


@router.post("/v1/accounts/{account}/api-keys", status_code=status.HTTP_201_CREATED, response_model=s.ApiKeyOut)
async def create_key(account: str, body: s.ApiKeyIn, rt: RT, who: Admin, response: Response,
                     idem: IdemHeader = None) -> s.ApiKeyOut:
    """Create an account key (admin). The key is in this response only; it is stored hashed."""
    await rt.ledger.account(account)
    new, info = await create_account_key(rt.ledger, account, body.role, body.name, env=rt.settings.key_env,
                                         idempotency_key=idempotency_key(idem, body.idempotency_key))
    _replayed(response, new is None)
    return _key_out(info, new.key if new else None)


@router.get("/v1/accounts/{account}/api-keys", response_model=s.ApiKeyList)
async def get_keys(account: str, rt: RT, who: Admin) -> s.ApiKeyList:
    """The account's keys (prefixes only), newest first."""
    await rt.ledger.account(account)
    return s.ApiKeyList(data=[_key_out(k) for k in await list_keys(rt.ledger.engine, account)])


@router.delete("/v1/accounts/{account}/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT,
               response_class=Response)
async def revoke_key(account: str, key_id: str, rt: RT, who: Admin) -> Response:
    """Revoke a key (admin); it answers 401 from now on, in every API process. Revoking twice is fine."""
    await revoke_account_key(rt.ledger, account, key_id)
    await rt.revoked(key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/api-keys", response_model=s.ApiKeyList)
async def get_operator_keys(rt: RT, who: Operator) -> s.ApiKeyList:
    """The operator keys (prefixes only), newest first, revoked ones included (operator)."""
    return s.ApiKeyList(data=[_key_out(k) for k in await list_keys(rt.ledger.engine, None)])


@router.delete("/v1/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def revoke_operator(key_id: str, rt: RT, who: Operator) -> Response:
    """Revoke an operator key (operator); it answers 401 from now on, in every API process.

    Revoking twice is fine; an id that is not an operator key's is a 404 (account keys are
    revoked on their account's path).
    """
    await revoke_operator_key(rt.ledger.engine, key_id)
    await rt.revoked(key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/me", response_model=s.MeOut)
async def me(rt: RT, who: Reader) -> s.MeOut:
    """Who this key is: its id, role and account (null for an operator key)."""
    return s.MeOut(key_id=who.key_id, role=who.role, account_id=who.account_id)
