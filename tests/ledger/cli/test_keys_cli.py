"""``credits keys``: create prints the key alone on its last line, once; it authenticates; revoke ends it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from ledger.cli.app import app
from ledger.db import make_engine
from ledger.keys import Principal, authenticate, parse_key
from tests.ledger.cli.test_cli import query


@pytest.fixture
def cli(fresh_database_url: str, tmp_path: Path) -> Iterator[Callable[..., Result]]:
    runner = CliRunner()
    env = {"DATABASE_URL": fresh_database_url, "CREDITS_DATA_DIR": str(tmp_path / "unused")}
    yield lambda *args: runner.invoke(app, list(args), env=env)


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
