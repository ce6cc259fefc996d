"""``LeanRoute`` answers exactly as FastAPI's own handler does.

The same requests go to the app as built (routes on the lean handler) and to a twin app on the
same runtime that has a dependency override, which makes every route hand each request to
FastAPI's handler. Status, headers and body must be identical: successes, idempotent replays,
refusals from the access check (401/404/403), 402s, and validation errors.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from fastapi import FastAPI

from ledger.api.app import create_app
from ledger.api.lean import LeanRoute
from ledger.api.runtime import Runtime
from tests.ledger.api.conftest import OpenApiAccount, bearer


def _never_used() -> None:
    """A dependency no route declares: overriding it only switches FastAPI's handler on."""


@pytest_asyncio.fixture(loop_scope="session")
async def standard(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime)
    app.dependency_overrides[_never_used] = _never_used
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ledger.test") as c:
        yield c


def answer(r: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    return r.status_code, sorted(r.headers.multi_items()), r.content


def test_the_hot_routes_use_the_lean_handler(app: FastAPI) -> None:
    lean = {(m, r.path) for r in app.routes if isinstance(r, LeanRoute)
            and r.get_route_handler().__qualname__.startswith("_lean_handler") for m in r.methods or ()}
    assert {("POST", "/v1/accounts/{account}/charges"), ("GET", "/v1/accounts/{account}/balance"),
            ("POST", "/v1/usage"), ("GET", "/v1/accounts/{account}/ledger")} <= lean


async def test_lean_and_standard_handlers_answer_alike(client: httpx.AsyncClient, standard: httpx.AsyncClient,
                                                       api_account: OpenApiAccount, operator_key: str) -> None:
    acct = await api_account(credits="1")
    other = await api_account(credits="1")
    member, read = bearer(acct.member), bearer(acct.read)
    charges = f"/v1/accounts/{acct.id}/charges"
    body = {"operation": "email", "quantity": 3, "attribution": {"agent": "a", "member": "m"}}
    key = {"Idempotency-Key": f"lean-{secrets.token_hex(4)}"}

    first = await client.post(charges, headers={**member, **key}, json=body)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    replays = [await c.post(charges, headers={**member, **key}, json=body) for c in (client, standard)]
    assert replays[0].headers["idempotent-replayed"] == "true"
    assert answer(replays[0]) == answer(replays[1])
    assert replays[0].content == first.content

    same = [
        ("GET", f"/v1/accounts/{acct.id}/balance", member, None, None),
        ("GET", f"/v1/accounts/{acct.id}/ledger?limit=2", read, None, None),
        ("POST", charges, {}, body, None),  # 401
        ("POST", charges, bearer("cl_test_not_a_key"), body, None),  # 401
        ("POST", f"/v1/accounts/{other.id}/charges", member, body, None),  # 404: another account
        ("POST", charges, read, body, None),  # 403: role too weak
        ("POST", charges, member, {"operation": "email", "quantity": 10**9}, None),  # 402
        ("POST", charges, member, {"operation": "email", "quantity": 1.5}, None),  # 422: a float
        ("POST", charges, member, {"operation": "email"}, None),  # 422: no quantity
        ("POST", charges, member, None, b"{not json"),  # 422: malformed JSON
        ("POST", charges, {**member, "content-type": "text/plain"}, None, b'{"operation": "email", "quantity": 1}'),
        ("POST", charges, {**member, "Idempotency-Key": "k" * 300}, body, None),  # 422: header too long
        ("GET", f"/v1/accounts/{acct.id}/ledger?limit=0", read, None, None),  # 422: query out of range
    ]
    for method, path, headers, json_body, raw in same:
        got = []
        for c in (client, standard):
            r = await c.request(method, path, headers=headers, json=json_body, content=raw)
            got.append(answer(r))
        assert got[0] == got[1], (method, path, headers, json_body, raw)
        if method == "POST" and got[0][0] == 201:  # nothing above may append
            raise AssertionError(f"{path} unexpectedly succeeded")
