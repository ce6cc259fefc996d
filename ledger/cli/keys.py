"""``credits keys``: create an API key (shown once), list keys, revoke one."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from redis.asyncio import Redis

from ledger.bootstrap import open_ledger
from ledger.cli.runner import fail, open_engine, run
from ledger.embedded import running_redis_url
from ledger.keys import (
    create_account_key,
    create_operator_key,
    find_key,
    list_keys,
    revoke_account_key,
    revoke_operator_key,
)
from ledger.revocations import announce
from ledger.settings import load_settings

app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)


@app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="operator (all accounts), or admin|member|read with --account.")],
    name: Annotated[str, typer.Option(help="What the key is for.")],
    account: Annotated[str | None, typer.Option(help="The account an admin/member/read key belongs to.")] = None,
    env: Annotated[str, typer.Option(help="Shown in the key (cl_<env>_...): live or test.")] = "live",
) -> None:
    """Create an API key; the key is printed once, alone on the last line."""
    if env not in ("live", "test"):
        fail("--env must be live or test")
    if (role == "operator") != (account is None):
        fail("an operator key takes no --account; admin, member and read keys need one")
    if role not in ("operator", "admin", "member", "read"):
        fail(f"unknown role {role!r}: use operator, admin, member or read")
    typer.echo(run(_keys_create(role, name, account, env)))


async def _keys_create(role: str, name: str, account: str | None, env: str) -> str:
    if account is None:
        async with open_engine() as engine:
            key, _ = await create_operator_key(engine, name, env=env)
        typer.echo(f"operator key {key.prefix} created; it is shown once:")
        return key.key
    async with open_ledger() as ledger:
        await ledger.account(account)
        new, info = await create_account_key(ledger, account, role, name, env=env)  # type: ignore[arg-type]
    assert new is not None
    typer.echo(f"{info.role} key {info.prefix} for {account} created; it is shown once:")
    return new.key


@app.command("list")
def keys_list(account: Annotated[str | None, typer.Option(help="Whose keys; omitted: the operator keys.")] = None,
              ) -> None:
    """List an account's keys, or the operator keys (prefixes only; secrets are never stored)."""
    run(_keys_list(account))


async def _keys_list(account: str | None) -> None:
    if account is None:
        async with open_engine() as engine:
            keys = await list_keys(engine, None)
    else:
        async with open_ledger() as ledger:
            await ledger.account(account)
            keys = await list_keys(ledger.engine, account)
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        typer.echo(f"{k.key_id}  {k.prefix}  {k.role:<6}  {state}  {k.name}")


@app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID")],
    account: Annotated[str | None, typer.Option(help="The key's account (checked); omitted: found by id.")] = None,
) -> None:
    """Revoke a key (operator or account key); requests with it get 401 from then on."""
    run(_keys_revoke(account, key_id))


async def _keys_revoke(account: str | None, key_id: str) -> None:
    if account is None:
        async with open_engine() as engine:
            info = await find_key(engine, key_id)
            if info.account_id is None:
                await revoke_operator_key(engine, key_id)
        account = info.account_id
    if account is not None:
        async with open_ledger() as ledger:
            await revoke_account_key(ledger, account, key_id)
    told = await _announce_revoked(key_id)
    typer.echo(f"revoked {key_id}" + ("" if told else
               "; running API processes refuse it within CREDITS_KEY_CACHE_S (Redis did not pass it on)"))


async def _announce_revoked(key_id: str) -> bool:
    """Tell running API processes at once (through Redis); ``False`` if Redis did not take it."""
    url = await asyncio.to_thread(running_redis_url, load_settings())
    if url is None:
        return True  # no REDIS_URL and no embedded Redis running: no API process to tell
    redis = Redis.from_url(url, socket_connect_timeout=1)
    try:
        return await announce(redis, key_id)
    finally:
        await redis.aclose()
