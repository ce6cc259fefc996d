"""The one body rule (``body.read_json``) holds on every route that takes a body, and only there.

The routes come from the OpenAPI document, so a route added without ``JsonBodyRoute`` fails here.
The body is read before the key is looked at, so no key is needed to see the rule's answers.
"""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI

PROBLEM = "application/problem+json"


def operations(app: FastAPI) -> list[tuple[str, str, bool]]:
    """(method, path with its parameters filled in, takes a body) for every operation."""
    found = []
    for path, item in app.openapi()["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        for method, op in item.items():
            if method in {"post", "put", "patch", "delete"}:
                found.append((method.upper(), concrete, "requestBody" in op))
    return found


async def test_every_route_with_a_body_holds_it_to_the_rule(app: FastAPI, client: httpx.AsyncClient) -> None:
    with_body = [(m, p) for m, p, body in operations(app) if body]
    assert ("POST", "/v1/accounts/x/charges") in with_body and len(with_body) >= 10, with_body
    cases = [
        ({"Content-Type": "text/plain"}, b'{"a": 1}', 415, "unsupported-media-type"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"a=1", 415, "unsupported-media-type"),
        ({}, b'{"a": 1}', 415, "unsupported-media-type"),
        ({"Content-Type": "application/json"}, '{"a": 1}'.encode("utf-16"), 400, "malformed-request"),
        ({"Content-Type": "application/json"}, b"\xff{}", 400, "malformed-request"),
        ({"Content-Type": "application/json"}, b"{not json", 400, "malformed-request"),
    ]
    for method, path in with_body:
        for headers, content, status, kind in cases:
            r = await client.request(method, path, headers=headers, content=content)
            assert r.status_code == status, (method, path, headers, content, r.text)
            assert r.headers["content-type"] == PROBLEM and r.json()["type"].endswith(kind), (method, path, r.text)


async def test_a_route_without_a_body_ignores_one(app: FastAPI, client: httpx.AsyncClient) -> None:
    without = [(m, p) for m, p, body in operations(app) if not body]
    assert without
    for method, path in without:
        r = await client.request(method, path, headers={"Content-Type": "text/plain"}, content=b"\xff not json")
        assert r.status_code not in {400, 415}, (method, path, r.text)
