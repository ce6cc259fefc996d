"""The HTTP edge (``ledger.api.edge``): what no route should see, and errors no route answered.

A NUL in any path parameter, an over-long URL and a cursor past the bigint range are 4xx
problems, not database errors; a key lookup while the database is down is a 503 with
``Retry-After``; and after any error the keep-alive connection stays usable (live server).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast
from uuid import uuid4

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from ledger.api.app import create_app
from ledger.api.edge import MAX_TARGET
from ledger.api.runtime import Runtime
from ledger.db import make_engine
from ledger.service import Ledger
from ledger.settings import Settings
from tests.ledger.api.conftest import OpenApiAccount, bearer
from tests.ledger.api.conftest import TestAccount as Account
from tests.ledger.api.live import live_server, operator_key_for

PROBLEM = "application/problem+json"


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, f"{r.request.method} {str(r.request.url)[:200]}: {r.status_code} {r.text[:500]}"
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["type"] and body["title"] and body["detail"], body
    return body


#: A value for each path parameter that names something plausible, so only the NUL is wrong.
_PLAIN = {"key_id": "abcdefghijkl", "deployment_id": "dep-1", "reservation_id": str(uuid4()), "endpoint_id": "we_1",
          "entry_id": str(uuid4()), "scope": "agent", "key": "bot"}


def _paths_with_a_nul(app: FastAPI, account: str) -> Iterator[tuple[str, str, str]]:
    """(method, path, parameter) for every route and each of its path parameters holding a NUL."""
    for ctx in iter_route_contexts(app.routes):
        if not isinstance(ctx.route, APIRoute) or ctx.path is None:
            continue
        params = re.findall(r"{(\w+)}", ctx.path)
        for bad in params:
            values = {p: "x%00y" if p == bad else account if p == "account" else _PLAIN.get(p, "x1") for p in params}
            for method in ctx.methods or ():
                yield method, ctx.path.format(**values), bad


@pytest_asyncio.fixture(loop_scope="session")
async def acct(api_account: OpenApiAccount) -> Account:
    return await api_account(credits="5", prefix="edge")


async def test_a_nul_in_any_path_parameter_is_a_404(client: httpx.AsyncClient, app: FastAPI, acct: Account,
                                                    operator_key: str) -> None:
    before = (await client.get(f"/v1/accounts/{acct.id}/balance", headers=bearer(operator_key))).json()
    cases = list(_paths_with_a_nul(app, acct.id))
    assert {p for _, _, p in cases} >= {"account", "key_id", "deployment_id", "reservation_id", "entry_id", "key",
                                       "endpoint_id"}
    for method, path, _ in cases:
        r = await client.request(method, path, headers=bearer(operator_key), json={} if method != "GET" else None)
        problem(r, 404)
    after = (await client.get(f"/v1/accounts/{acct.id}/balance", headers=bearer(operator_key))).json()
    assert after["version"] == before["version"]


async def test_a_cursor_past_the_bigint_range_is_a_422(client: httpx.AsyncClient, acct: Account) -> None:
    # base64 of "v1:9223372036854775808" (2**63): it was passed to PostgreSQL and failed there.
    for route in ("ledger", "notifications"):
        r = await client.get(f"/v1/accounts/{acct.id}/{route}?cursor=djE6OTIyMzM3MjAzNjg1NDc3NTgwOA",
                             headers=bearer(acct.read))
        assert problem(r, 422)["detail"] == "cursor is not one this API returned"
    # 2**63 - 1 is still a cursor (past the newest entry: the whole ledger).
    r = await client.get(f"/v1/accounts/{acct.id}/ledger?cursor=djE6OTIyMzM3MjAzNjg1NDc3NTgwNw",
                         headers=bearer(acct.read))
    assert r.status_code == 200, r.text


async def test_a_url_longer_than_the_api_reads_is_a_414(client: httpx.AsyncClient, acct: Account) -> None:
    path = f"/v1/accounts/{acct.id}/ledger?limit=1&x="
    r = await client.get(path + "a" * (MAX_TARGET - len(path)), headers=bearer(acct.read))
    assert r.status_code == 200, r.text
    r = await client.get(path + "a" * (MAX_TARGET - len(path) + 1), headers=bearer(acct.read))
    problem(r, 414)


async def test_a_key_lookup_while_the_database_is_down_is_a_503(ledger: Ledger) -> None:
    """The key is not in the cache and PostgreSQL does not answer: an outage, not a 500."""
    down = make_engine("postgresql://postgres@127.0.0.1:1/nothing", pool_size=1)  # nothing listens on port 1
    stand_in = SimpleNamespace(engine=down, writer=SimpleNamespace(on_commit=[]), card=ledger.card)
    runtime = Runtime(ledger=cast(Ledger, stand_in), settings=Settings(key_env="test"))
    app = create_app(runtime)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ledger.test") as c:
            r = await c.get("/v1/me", headers=bearer("cl_test_abcdefghijkl_" + "a" * 32))
    finally:
        await down.dispose()
    body = problem(r, 503)
    assert int(r.headers["retry-after"]) > 0 and body["retry_after_s"] == int(r.headers["retry-after"]), body


# ---- keep-alive after an error, on a real server ---------------------------------------------

def _boom(app: FastAPI) -> None:
    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/test/boom", boom)


@pytest.fixture(scope="module")
def live(database_url: str, redis_url: str) -> Iterator[tuple[str, str]]:
    with live_server(database_url, redis_url, configure=_boom) as base:
        yield base, operator_key_for(database_url)


def test_the_connection_stays_usable_after_every_kind_of_error(live: tuple[str, str]) -> None:
    """An error (a 500 above all: Starlette re-raised it and uvicorn dropped the connection without
    ``Connection: close``) is a normal response; the next request on the same connection succeeds."""
    base, key = live
    errors = [
        ("GET", "/test/boom", {}, None, 500),
        ("GET", "/v1/accounts/x%00y", bearer(key), None, 404),
        ("GET", "/v1/accounts/x/ledger?cursor=djE6OTIyMzM3MjAzNjg1NDc3NTgwOA", bearer(key), None, 422),
        ("GET", "/v1/me?x=" + "a" * 20_000, bearer(key), None, 414),
        ("POST", "/v1/usage", {**bearer(key), "Content-Type": "application/json"}, b'{"events": [', 400),
        ("POST", "/v1/usage", bearer(key), b"events=1", 415),
        ("POST", "/v1/usage", {"Content-Type": "application/json"}, b"{}", 401),
        ("POST", "/v1/no-such-route", {"Content-Type": "application/json"}, b'{"unread": true}' * 5000, 404),
        ("DELETE", "/v1/me", bearer(key), None, 405),
    ]
    with httpx.Client(base_url=base) as client:
        for method, path, headers, content, status in errors:
            r = client.request(method, path, headers=headers, content=content)
            problem(r, status)
            assert r.headers.get("connection", "").lower() != "close", (path, r.headers)
            where = r.extensions["network_stream"].get_extra_info("client_addr")
            ok = client.get("/healthz")
            assert ok.status_code == 200
            assert ok.extensions["network_stream"].get_extra_info("client_addr") == where, f"{path}: a new connection"


def test_a_100k_url_is_answered_on_the_wire(live: tuple[str, str]) -> None:
    """uvicorn's parser (httptools) refuses URLs over 65,535 bytes before the app is called; below that the
    app answers 414. Either way the answer says ``Connection: close`` when the connection ends."""
    base, _ = live
    host, port = base.removeprefix("http://").split(":")
    for length, status in ((60_000, b"414"), (100_000, b"400")):
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"GET /healthz?x=" + b"a" * length + b" HTTP/1.1\r\nHost: ledger\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(65536)
                assert chunk, head
                head += chunk
        status_line, _, headers = head.partition(b"\r\n\r\n")[0].partition(b"\r\n")
        assert status_line.split()[1] == status, head
        if status == b"414":
            assert b"content-type: application/problem+json" in headers.lower(), head
        else:
            assert b"connection: close" in headers.lower(), head


def test_a_utf8_idempotency_key_on_the_wire_is_the_body_s_key(live: tuple[str, str]) -> None:
    """uvicorn hands a header's bytes over as they came; the API reads them as UTF-8 (not Latin-1)."""
    base, key = live
    account = f"edge-{uuid4().hex[:8]}"
    with httpx.Client(base_url=base, headers=bearer(key)) as client:
        assert client.post("/v1/accounts", json={"id": account, "name": account}).status_code == 201
        assert client.post(f"/v1/accounts/{account}/grants", json={"amount": "5", "reason": "t"}).status_code == 201
        charge = {"operation": "email", "quantity": 1}
        first = client.post(f"/v1/accounts/{account}/charges", json=charge,
                            headers={b"Idempotency-Key": "ключ-9".encode()})
        again = client.post(f"/v1/accounts/{account}/charges", json={**charge, "idempotency_key": "ключ-9"})
        assert (first.status_code, again.status_code) == (201, 201), (first.text, again.text)
        assert again.headers["idempotent-replayed"] == "true" and again.json()["id"] == first.json()["id"]
        bad = client.post(f"/v1/accounts/{account}/charges", json=charge, headers={b"Idempotency-Key": b"\xff\xfe"})
        problem(bad, 400)
