"""Fuzzing every route over a real socket: no input is a 5xx, every error is problem+json, and the
keep-alive connection survives it all.

Schemathesis generates each operation's path, query, headers and body from ``/openapi.json``,
valid and invalid (negative mode), from all of Unicode (NUL included); Hypothesis puts arbitrary
text (anything HTTP can carry: every code point but the surrogates) in each path parameter. All
requests of a test go over one kept connection, so an error that dropped it fails the next.
A bounded number of examples keeps each test to seconds.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
import schemathesis
from fastapi.routing import APIRoute, iter_route_contexts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from ledger.api.app import create_app
from ledger.testing.stripe import StripeStandIn
from tests.ledger.api.conftest import standin_settings
from tests.ledger.api.live import live_server, operator_key_for

pytestmark = pytest.mark.slow

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def live(database_url: str, redis_url: str, stripe_standin: StripeStandIn) -> Iterator[tuple[str, str, str]]:
    """A live server (rate limits off: the fuzz would trip them), an operator key, a funded account."""
    with live_server(database_url, redis_url, rate_limits=False, **standin_settings(stripe_standin)) as base:
        key = operator_key_for(database_url)
        account = f"fz-{secrets.token_hex(4)}"
        h = {"Authorization": f"Bearer {key}"}
        r = httpx.post(f"{base}/v1/accounts", json={"id": account, "name": "fuzz", "plan": "team"}, headers=h)
        assert r.status_code == 201, r.text
        r = httpx.post(f"{base}/v1/accounts/{account}/grants", headers=h,
                       json={"amount": "1000", "source": "purchase", "reason": "fuzz"})
        assert r.status_code == 201, r.text
        yield base, key, account


def assert_answered(status: int, content_type: str, body: bytes, what: str) -> None:
    assert status < 500, f"{what}: {status} {body[:500]!r}"
    if status >= 400:
        assert content_type.startswith(PROBLEM), f"{what}: {status} {content_type} {body[:300]!r}"


# ---- schemathesis: every operation, valid and invalid data ------------------------------------

schema = schemathesis.openapi.from_dict(create_app().openapi())
schema.config.generation.update(modes=[GenerationMode.NEGATIVE, GenerationMode.POSITIVE], max_examples=12,
                                codec="utf-8", allow_x00=True)
@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """One kept connection for every generated request."""
    with requests.Session() as s:
        yield s


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_is_a_server_error(case: Any, live: tuple[str, str, str],
                                                session: requests.Session) -> None:
    base, key, account = live
    if "account" in (case.path_parameters or {}) and secrets.randbelow(2):
        case.path_parameters["account"] = account
    headers = dict(case.headers or {})
    headers.setdefault("Authorization", f"Bearer {key}")
    response = case.call(base_url=base, headers=headers, session=session)
    case.validate_response(response, checks=[schemathesis.checks.not_a_server_error])
    content_type = response.headers.get("content-type") or [""]  # each header: a list of its values
    assert_answered(response.status_code, content_type[0], response.content, f"{case.method} {case.formatted_path}")


# ---- hypothesis: arbitrary text in every path parameter ----------------------------------------

def _templates() -> list[tuple[str, str, tuple[str, ...]]]:
    """(method, path template, its parameters) of every route with a path parameter."""
    found = []
    for ctx in iter_route_contexts(create_app().routes):
        if isinstance(ctx.route, APIRoute) and ctx.path is not None and "{" in ctx.path:
            for method in sorted(ctx.methods or ()):
                found.append((method, ctx.path, tuple(re.findall(r"{(\w+)}", ctx.path))))
    return found


TEMPLATES = _templates()
# Everything a URL can carry once percent-encoded as UTF-8 (every code point but the surrogates),
# with the characters that have broken paths before (NUL, separators, dots) made likely.
TEXT = st.text(st.one_of(st.characters(codec="utf-8"), st.sampled_from("\x00/%?#.; \t\u00e9\U0001f600")),
               max_size=40)


@pytest.fixture(scope="module")
def client(live: tuple[str, str, str]) -> Iterator[httpx.Client]:
    base, key, _ = live
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as c:
        yield c


@pytest.mark.parametrize("route", TEMPLATES, ids=[f"{m} {t}" for m, t, _ in TEMPLATES])
@given(data=st.data())
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_text_in_a_path_parameter_is_answered(route: tuple[str, str, tuple[str, ...]], data: st.DataObject,
                                                  client: httpx.Client, live: tuple[str, str, str]) -> None:
    method, template, params = route
    _, _, account = live
    values = {p: data.draw(st.one_of(TEXT, st.just(account)) if p == "account" else TEXT, label=p) for p in params}
    path = template.format(**{p: quote(v, safe="") for p, v in values.items()})
    r = client.request(method, path, json={} if method in ("POST", "PUT", "PATCH") else None)
    assert_answered(r.status_code, r.headers.get("content-type", ""), r.content, f"{method} {path}")
    assert r.headers.get("connection", "").lower() != "close", (path, r.headers)
