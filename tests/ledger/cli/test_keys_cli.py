"""``credits keys``: create prints the key alone on its last line, once; it authenticates; revoke ends it,
for account and operator keys, and a running server refuses the key at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from ledger.cli.app import app
from ledger.db import make_engine
from ledger.keys import Principal, authenticate, parse_key
from tests.ledger.api.live import live_server
from tests.ledger.cli.test_cli import query


@pytest.fixture
def cli(fresh_database_url: str, tmp_path: Path) -> Iterator[Callable[..., Result]]:
    runner = CliRunner()
    base = {"DATABASE_URL": fresh_database_url, "CREDITS_DATA_DIR": str(tmp_path / "unused")}

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, list(args), env={**base, **(env or {})})

    yield invoke


def auth(url: str, key: str) -> Principal | None:
    async def main() -> Principal | None:
        engine = make_engine(url, pool_size=1)
        try:
            return await authenticate(engine, key)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_operator_key_is_printed_alone_on_the_last_line_and_stored_hashed(
        cli: Callable[..., Result], fresh_database_url: str) -> None:
    result = cli("keys", "create", "--role", "operator", "--name", "backend")
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert parse_key(key) is not None, key
    assert auth(fresh_database_url, key) == Principal(parse_key(key)[0], "operator", None)  # type: ignore[index]
    stored = query(fresh_database_url, "SELECT prefix, secret_sha256 FROM api_keys")
    assert len(stored) == 1
    prefix, digest = stored[0]
    assert key.startswith(prefix + "_")
    assert key.split("_")[-1].encode() not in bytes(digest), "the secret itself must never be stored"


def test_account_key_roles_and_revocation(cli: Callable[..., Result], fresh_database_url: str) -> None:
    assert cli("accounts", "open", "acme", "--plan", "pro").exit_code == 0
    result = cli("keys", "create", "--account", "acme", "--role", "member", "--name", "worker", "--env", "test")
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("cl_test_")
    who = auth(fresh_database_url, key)
    assert who is not None and who.role == "member" and who.account_id == "acme"
    # The creation is on the account's own stream.
    assert query(fresh_database_url, "SELECT count(*) FROM events WHERE account_id = 'acme'"
                                     " AND type = 'ApiKeyCreated'") == [(1,)]

    listed = cli("keys", "list", "--account", "acme")
    assert who.key_id in listed.stdout and "active" in listed.stdout

    assert cli("keys", "revoke", who.key_id, "--account", "acme").exit_code == 0
    assert auth(fresh_database_url, key) is None
    assert cli("keys", "revoke", who.key_id, "--account", "acme").exit_code == 0, "revoking twice is fine"
    assert query(fresh_database_url, "SELECT count(*) FROM events WHERE type = 'ApiKeyRevoked'") == [(1,)]


@pytest.mark.parametrize("args, message", [
    (("--role", "admin", "--name", "x"), "need one"),
    (("--role", "operator", "--name", "x", "--account", "acme"), "takes no --account"),
    (("--role", "owner", "--name", "x", "--account", "acme"), "unknown role"),
    (("--role", "admin", "--name", "x", "--account", "nobody"), "no account 'nobody'"),
])
def test_bad_key_requests_are_one_line_errors(cli: Callable[..., Result], fresh_database_url: str,
                                              args: tuple[str, ...], message: str) -> None:
    result = cli("keys", "create", *args)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert query(fresh_database_url, "SELECT count(*) FROM api_keys") == [(0,)]


def test_a_tampered_or_malformed_key_does_not_authenticate(cli: Callable[..., Result],
                                                           fresh_database_url: str) -> None:
    key = cli("keys", "create", "--role", "operator", "--name", "x").stdout.strip().splitlines()[-1]
    last = "a" if key[-1] != "a" else "b"
    for bad in (key[:-1] + last, key + "a", key.upper(), "", "Bearer " + key, key.replace("cl_", "xx_")):
        assert auth(fresh_database_url, bad) is None, bad


def test_operator_keys_are_listed_and_revoked_and_a_server_refuses_them_at_once(
        cli: Callable[..., Result], fresh_database_url: str, redis_url: str) -> None:
    keys = [cli("keys", "create", "--role", "operator", "--name", name).stdout.strip().splitlines()[-1]
            for name in ("backend", "spare")]
    backend, spare = (parse_key(k)[0] for k in keys)  # type: ignore[index]
    listed = cli("keys", "list")  # no --account: the operator keys
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert set(rows) == {backend, spare} and all("operator" in r and "active" in r for r in rows.values())

    # A running server that would trust a verified key for an hour: only the revocation's
    # announcement makes it refuse the key it has cached.
    with live_server(fresh_database_url, redis_url, key_cache_s=3600) as base:
        def me(key: str) -> int:
            return httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code

        assert me(keys[1]) == 200
        revoked = cli("keys", "revoke", spare, env={"REDIS_URL": redis_url})
        assert revoked.exit_code == 0 and f"revoked {spare}" in revoked.stdout, revoked.output
        deadline = time.monotonic() + 5
        while me(keys[1]) != 401:
            assert time.monotonic() < deadline, "the server still trusts the revoked operator key"
            time.sleep(0.01)
        assert me(keys[0]) == 200, "the other operator key still works"

    assert auth(fresh_database_url, keys[1]) is None
    after = cli("keys", "list").stdout.splitlines()
    assert "revoked" in next(line for line in after if line.startswith(spare))
    assert "active" in next(line for line in after if line.startswith(backend))
    assert cli("keys", "revoke", spare).exit_code == 0, "revoking twice is fine"
    missing = cli("keys", "revoke", "nosuchkeyid1")
    assert missing.exit_code == 1 and missing.stderr.startswith("error: ") and "not found" in missing.stderr


def test_revoke_finds_an_account_key_by_id_and_checks_a_given_account(
        cli: Callable[..., Result], fresh_database_url: str) -> None:
    assert cli("accounts", "open", "acme", "--plan", "pro").exit_code == 0
    key = cli("keys", "create", "--account", "acme", "--role", "read", "--name", "r").stdout.strip().splitlines()[-1]
    key_id = parse_key(key)[0]  # type: ignore[index]
    operator = cli("keys", "create", "--role", "operator", "--name", "o").stdout.strip().splitlines()[-1]
    wrong = cli("keys", "revoke", parse_key(operator)[0], "--account", "acme")  # type: ignore[index]
    assert wrong.exit_code == 1 and "not found" in wrong.stderr, "an operator key is no account's"
    assert auth(fresh_database_url, operator) is not None
    assert cli("keys", "revoke", key_id).exit_code == 0
    assert auth(fresh_database_url, key) is None
    assert query(fresh_database_url, "SELECT count(*) FROM events WHERE type = 'ApiKeyRevoked'") == [(1,)]
