"""Revocation reaches every API process: two servers on one PostgreSQL and Redis, each trusting a
verified key for an hour (``key_cache_s``), so only the revocation message can make the second
one refuse a key it has cached. Operator keys are listed and revoked over HTTP too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest

from tests.ledger.api.live import live_server, operator_key_for

#: Far longer than any test: a cached key is trusted until something says otherwise.
HOUR_S = 3600
#: How long the other process may take to act on the message (it takes milliseconds).
BOUND_S = 5.0  # float-ok: seconds


@dataclass(frozen=True)
class Servers:
    one: str
    two: str
    operator: str
    database_url: str


@pytest.fixture
def servers(fresh_database_url: str, redis_url: str) -> Iterator[Servers]:
    """Two API processes' worth of app (each its own runtime, cache and subscription), and an operator key."""
    with ExitStack() as stack:
        one = stack.enter_context(live_server(fresh_database_url, redis_url, key_cache_s=HOUR_S))
        two = stack.enter_context(live_server(fresh_database_url, redis_url, key_cache_s=HOUR_S))
        yield Servers(one, two, operator_key_for(fresh_database_url), fresh_database_url)


def status(base: str, key: str, path: str = "/v1/me") -> int:
    return httpx.get(f"{base}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code


def refused_within_bound(base: str, key: str) -> bool:
    """Whether ``base`` answers 401 for ``key`` within ``BOUND_S`` (polled; the cache would hold it an hour)."""
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        if status(base, key) == 401:
            return True
        time.sleep(0.01)
    return False


def test_an_account_key_revoked_in_one_process_is_refused_by_the_other(servers: Servers) -> None:
    one, two, operator = servers.one, servers.two, servers.operator
    op = {"Authorization": f"Bearer {operator}"}
    r = httpx.post(f"{one}/v1/accounts", headers=op, json={"id": "revoke-me", "name": "r", "plan": "team"})
    assert r.status_code == 201, r.text
    made = httpx.post(f"{one}/v1/accounts/revoke-me/api-keys", headers=op, json={"role": "read", "name": "r"}).json()
    key = made["key"]
    assert status(one, key) == status(two, key) == 200  # verified, and now cached by both

    r = httpx.delete(f"{one}/v1/accounts/revoke-me/api-keys/{made['id']}", headers=op)
    assert r.status_code == 204, r.text
    assert status(one, key) == 401, "the revoking process refuses it at once"
    assert refused_within_bound(two, key), "the other process still trusts a revoked key"
    assert status(two, key, "/v1/accounts/revoke-me/balance") == 401


def test_operator_keys_are_listed_and_revoked_over_http_in_every_process(servers: Servers) -> None:
    one, two, operator = servers.one, servers.two, servers.operator
    op = {"Authorization": f"Bearer {operator}"}
    doomed = operator_key_for(servers.database_url)
    assert status(one, doomed) == status(two, doomed) == 200
    doomed_id = httpx.get(f"{two}/v1/me", headers={"Authorization": f"Bearer {doomed}"}).json()["key_id"]

    listed = httpx.get(f"{one}/v1/api-keys", headers=op).json()["data"]
    assert {k["id"]: (k["role"], k["revoked_at"]) for k in listed}[doomed_id] == ("operator", None)
    assert all("key" not in k or k["key"] is None for k in listed), "secrets are never listed"

    r = httpx.delete(f"{one}/v1/api-keys/{doomed_id}", headers=op)
    assert r.status_code == 204, r.text
    assert status(one, doomed) == 401
    assert refused_within_bound(two, doomed)
    listed = httpx.get(f"{two}/v1/api-keys", headers=op).json()["data"]
    assert {k["id"]: k["revoked_at"] for k in listed}[doomed_id] is not None
    assert httpx.delete(f"{two}/v1/api-keys/{doomed_id}", headers=op).status_code == 204, "twice is fine"
    assert status(one, operator) == 200, "the other operator key is untouched"

    # An account key is not an operator key: 404 here (it is revoked on its account's path).
    r = httpx.post(f"{one}/v1/accounts", headers=op, json={"id": "keeps-key", "name": "k", "plan": "team"})
    assert r.status_code == 201, r.text
    admin = httpx.post(f"{one}/v1/accounts/keeps-key/api-keys", headers=op, json={"role": "admin", "name": "a"}).json()
    r = httpx.delete(f"{one}/v1/api-keys/{admin['id']}", headers=op)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json", r.text
    assert status(one, admin["key"]) == 200
    # And an account key may not touch operator keys.
    for method in ("GET", "DELETE"):
        path = "/v1/api-keys" if method == "GET" else f"/v1/api-keys/{doomed_id}"
        r = httpx.request(method, f"{one}{path}", headers={"Authorization": f"Bearer {admin['key']}"})
        assert r.status_code == 403, r.text

