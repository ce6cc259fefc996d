"""Tenancy and roles over HTTP, for every route the app actually serves.

The routes are enumerated from the app itself, so a route added without a case in ``CASES`` (or
an explicit place in ``UNSCOPED`` / ``PUBLIC``) fails ``test_every_route_has_a_tenancy_case``.
Each case is an example request that succeeds for the owning account (checked: the positive
control at the end of the cross-account test), so the 404s, 403s and 401s below are the auth
layer's answers, not a bad example's.

- another account's keys (admin, member, read) on an account's path: 404 problem+json, the same
  answer as for an account that does not exist, and neither account changes;
- a role too weak on the account's own path: 403, nothing changes;
- no key, a malformed, unknown, tampered or revoked key: 401 with ``WWW-Authenticate``;
- ids of another account's objects (entries, reservations, deployments, keys, webhook
  endpoints) on one's own path: 404, and the other account's objects are untouched;
- ``/v1/usage`` items naming another account are rejected one by one, with the same 404.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from ledger.keys import create_operator_key
from ledger.service import Ledger
from ledger.testing.stripe import StripeStandIn
from tests.ledger.api.conftest import OpenApiAccount, bearer
from tests.ledger.api.conftest import TestAccount as Account
from tests.ledger.api.stripe_helpers import PAGES, checkout, invoices, pay
from tests.projections.folding import fold_all

PROBLEM = "application/problem+json"
RANK = {"read": 0, "member": 1, "admin": 2, "operator": 3}
ACCOUNT_ROLES = ("admin", "member", "read")

Json = dict[str, Any]


# ---- the world an example request runs in ----------------------------------------------------

@dataclass(frozen=True)
class World:
    """Account A (the target, with objects every route can act on) and account B (the intruder)."""

    a: Account
    b: Account
    operator: str
    entry_id: str
    spare_key_id: str
    reservation_to_settle: str
    reservation_to_release: str
    endpoint_to_patch: str
    endpoint_to_delete: str
    spare_operator_key_id: str
    #: A purchase paid through the Stripe stand-in (refunds, the billing portal).
    purchase_id: str


@dataclass(frozen=True)
class Case:
    """The least role the route needs and an example request: (path params, JSON body or None)."""

    role: str
    example: Callable[[World], tuple[dict[str, str], Json | None]]


def _no_body(**params: str) -> Callable[[World], tuple[dict[str, str], Json | None]]:
    return lambda w: (dict(params), None)


def _body(body: Json, **params: str) -> Callable[[World], tuple[dict[str, str], Json | None]]:
    return lambda w: (dict(params), body)


#: Every account-scoped route: its least role and a request that succeeds for the owner.
CASES: dict[tuple[str, str], Case] = {
    ("GET", "/v1/accounts/{account}"): Case("read", _no_body()),
    ("POST", "/v1/accounts/{account}/api-keys"): Case("admin", _body({"role": "read", "name": "tenancy"})),
    ("GET", "/v1/accounts/{account}/api-keys"): Case("admin", _no_body()),
    ("DELETE", "/v1/accounts/{account}/api-keys/{key_id}"):
        Case("admin", lambda w: ({"key_id": w.spare_key_id}, None)),
    ("GET", "/v1/accounts/{account}/balance"): Case("read", _no_body()),
    ("GET", "/v1/accounts/{account}/ledger"): Case("read", _no_body()),
    ("GET", "/v1/accounts/{account}/entries/{entry_id}/explain"):
        Case("read", lambda w: ({"entry_id": w.entry_id}, None)),
    ("POST", "/v1/accounts/{account}/estimate"): Case("read", _body({"operation": "email", "quantity": 1000})),
    ("POST", "/v1/accounts/{account}/charges"): Case("member", _body({"operation": "email", "quantity": 1000})),
    ("POST", "/v1/accounts/{account}/reservations"):
        Case("member", _body({"operation": "email", "quantity": 1000})),
    ("POST", "/v1/accounts/{account}/reservations/{reservation_id}/settle"):
        Case("member", lambda w: ({"reservation_id": w.reservation_to_settle}, {"quantity": 500})),
    ("POST", "/v1/accounts/{account}/reservations/{reservation_id}/release"):
        Case("member", lambda w: ({"reservation_id": w.reservation_to_release}, None)),
    ("POST", "/v1/accounts/{account}/coupons"): Case("admin", _body({"code": "WELCOME10"})),
    ("POST", "/v1/accounts/{account}/grants"):
        Case("operator", _body({"amount": "1", "source": "promotion", "reason": "tenancy"})),
    ("POST", "/v1/accounts/{account}/deployments"):
        Case("member", _body({"deployment_id": "dep-new", "instance_type": "cpu-s"})),
    ("GET", "/v1/accounts/{account}/deployments"): Case("read", _no_body()),
    ("POST", "/v1/accounts/{account}/deployments/{deployment_id}/stop"):
        Case("member", _no_body(deployment_id="dep-stop")),
    ("POST", "/v1/accounts/{account}/deployments/{deployment_id}/pause"):
        Case("member", _no_body(deployment_id="dep-pause")),
    ("POST", "/v1/accounts/{account}/deployments/{deployment_id}/resume"):
        Case("member", _no_body(deployment_id="dep-resume")),
    ("PUT", "/v1/accounts/{account}/budget"):
        Case("admin", _body({"monthly_limit": "100", "warn_pct": 70, "critical_pct": 90})),
    ("PUT", "/v1/accounts/{account}/limits/{scope}/{key}"):
        Case("admin", _body({"per_run": "1"}, scope="agent", key="bot-1")),
    ("PUT", "/v1/accounts/{account}/auto-refill"):
        Case("admin", _body({"enabled": True, "threshold": "5", "amount": "20"})),
    ("GET", "/v1/accounts/{account}/auto-refill"): Case("read", _no_body()),
    ("POST", "/v1/accounts/{account}/auto-refill/payment-method"): Case("admin", _body(PAGES)),
    ("PUT", "/v1/accounts/{account}/plan"): Case("admin", _body({"plan": "free"})),
    ("GET", "/v1/accounts/{account}/notifications"): Case("read", _no_body()),
    ("POST", "/v1/accounts/{account}/webhook-endpoints"): Case("admin", _body({"url": "https://93.184.216.34/hooks"})),
    ("GET", "/v1/accounts/{account}/webhook-endpoints"): Case("admin", _no_body()),
    ("PATCH", "/v1/accounts/{account}/webhook-endpoints/{endpoint_id}"):
        Case("admin", lambda w: ({"endpoint_id": w.endpoint_to_patch}, {"enabled": False})),
    ("DELETE", "/v1/accounts/{account}/webhook-endpoints/{endpoint_id}"):
        Case("admin", lambda w: ({"endpoint_id": w.endpoint_to_delete}, None)),
    ("POST", "/v1/accounts/{account}/checkout"): Case("admin", _body({"pack": "starter", **PAGES})),
    ("POST", "/v1/accounts/{account}/refunds"):
        Case("operator", lambda w: ({}, {"purchase_id": w.purchase_id, "amount": "1", "reason": "tenancy"})),
    ("POST", "/v1/accounts/{account}/billing-portal"): Case("admin", _no_body()),
    ("GET", "/v1/accounts/{account}/invoices"): Case("read", _no_body()),
    ("GET", "/v1/accounts/{account}/export.csv"): Case("read", _no_body()),
    ("GET", "/v1/accounts/{account}/history"): Case("read", _no_body()),
    ("GET", "/v1/accounts/{account}/history/deployments"): Case("read", _no_body()),
    ("GET", "/v1/accounts/{account}/activities"): Case("read", _no_body()),
    ("GET", "/v1/accounts/{account}/usage"): Case("read", _no_body()),
    ("GET", "/v1/accounts/{account}/analytics"): Case("read", _no_body()),
    # Usage that named no execution is found by its entry id (the world's charge, projected).
    ("GET", "/v1/accounts/{account}/executions/{execution_id}"):
        Case("read", lambda w: ({"execution_id": w.entry_id}, None)),
    ("GET", "/v1/accounts/{account}/flows/{flow}"): Case("read", _no_body(flow="welcome")),
}

#: Routes that need a key but name no account in their path (an account key acts on its own).
UNSCOPED: dict[tuple[str, str], Case] = {
    ("POST", "/v1/accounts"): Case("operator", _body({"name": "tenancy"})),
    ("GET", "/v1/accounts"): Case("operator", _no_body()),
    ("GET", "/v1/me"): Case("read", _no_body()),
    ("GET", "/v1/rates"): Case("read", _no_body()),
    ("GET", "/v1/packs"): Case("read", _no_body()),
    ("POST", "/v1/usage"): Case("member", lambda w: ({}, {"events": [{
        "account_id": w.a.id, "operation": "email", "quantity": 1, "idempotency_key": "tenancy-usage"}]})),
    ("GET", "/v1/api-keys"): Case("operator", _no_body()),
    ("DELETE", "/v1/api-keys/{key_id}"): Case("operator", lambda w: ({"key_id": w.spare_operator_key_id}, None)),
}

#: Routes for the operator's probes and the API's documentation: no key, no account.
PUBLIC: set[tuple[str, str]] = {
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"),
    ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc"),
    ("GET", "/dashboard"),
}

#: Static files anyone may read, no key, no account: the dashboard's scripts and styles
#: (tests/ledger/api/test_dashboard.py) and the documentation pages' (tests/ledger/api/test_docs_ui.py).
STATIC: set[tuple[str, str]] = {("GET", "/dashboard/{asset}"), ("GET", "/dashboard/vendor/{asset}"),
                                ("*", "/docs/assets")}

#: Routes whose caller proves itself another way than an API key: Stripe signs its webhooks
#: (tests/ledger/api/test_checkout.py: a missing or bad signature is a 400 and records nothing).
SIGNED: set[tuple[str, str]] = {("POST", "/v1/stripe/webhook")}

#: POSTs that write nothing (a read key may use them).
READ_ONLY_POSTS = {("POST", "/v1/accounts/{account}/estimate")}

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path template) of every route the app serves; ``("*", path)`` for a mount or websocket."""
    found: set[tuple[str, str]] = set()
    for ctx in iter_route_contexts(app.routes):
        path, methods = ctx.path, ctx.methods
        if path is None:
            found.add(("*", repr(ctx.route)))
        elif methods is None:
            found.add(("*", path))
        else:
            found.update((m, path) for m in methods if m != "HEAD")
    return found


def _ids(cases: dict[tuple[str, str], Case]) -> list[str]:
    return [f"{m} {p}" for m, p in cases]


# ---- helpers -------------------------------------------------------------------------------

async def send(client: httpx.AsyncClient, w: World, route: tuple[str, str], case: Case, *,
               headers: dict[str, str], account: str | None = None) -> httpx.Response:
    method, template = route
    params, body = case.example(w)
    path = template.format(account=account or w.a.id, **params)
    return await client.request(method, path, headers=headers, json=body)


State = tuple[int, int, int, list[tuple[str, str | None]], list[tuple[str, str]]]


async def state(client: httpx.AsyncClient, operator: str, account: str) -> State:
    """What a request could change, read with the operator key: the stream version, balance and
    reserved µcr, and what lives beside the stream (API keys and their revocation, webhook endpoints)."""
    h = bearer(operator)
    r = await client.get(f"/v1/accounts/{account}/balance", headers=h)
    assert r.status_code == 200, r.text
    b = r.json()
    r = await client.get(f"/v1/accounts/{account}/api-keys", headers=h)
    assert r.status_code == 200, r.text
    keys = sorted((k["id"], k["revoked_at"]) for k in r.json()["data"])
    r = await client.get(f"/v1/accounts/{account}/webhook-endpoints", headers=h)
    assert r.status_code == 200, r.text
    endpoints = sorted((e["id"], e["status"]) for e in r.json()["data"])
    return b["version"], b["balance_ucr"], b["reserved_ucr"], keys, endpoints


def assert_problem(r: httpx.Response, status: int, what: str) -> Json:
    assert r.status_code == status, f"{what}: expected {status}, got {r.status_code}: {r.text}"
    assert r.headers["content-type"].startswith(PROBLEM), f"{what}: {r.headers['content-type']}"
    body: Json = r.json()
    assert body["status"] == status and body["type"] and body["title"], f"{what}: {body}"
    return body


async def key_id(client: httpx.AsyncClient, key: str) -> str:
    r = await client.get("/v1/me", headers=bearer(key))
    assert r.status_code == 200, r.text
    kid: str = r.json()["key_id"]
    return kid


async def ok(client: httpx.AsyncClient, method: str, path: str, key: str, body: Json | None = None,
             status: int = 201) -> Json:
    r = await client.request(method, path, headers=bearer(key), json=body)
    assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
    out: Json = r.json()
    return out


@pytest_asyncio.fixture(loop_scope="session")
async def world(client: httpx.AsyncClient, api_account: OpenApiAccount, operator_key: str, ledger: Ledger,
                stripe_standin: StripeStandIn) -> World:
    a = await api_account(credits="50", prefix="ten-a")
    b = await api_account(credits="50", prefix="ten-b")
    base = f"/v1/accounts/{a.id}"
    charge = await ok(client, "POST", f"{base}/charges", a.member, {"operation": "email", "quantity": 1000})
    settle = await ok(client, "POST", f"{base}/reservations", a.member, {"operation": "email", "quantity": 1000})
    release = await ok(client, "POST", f"{base}/reservations", a.member, {"operation": "email", "quantity": 1000})
    for dep in ("dep-stop", "dep-pause", "dep-resume"):
        await ok(client, "POST", f"{base}/deployments", a.member, {"deployment_id": dep, "instance_type": "cpu-s"})
    await ok(client, "POST", f"{base}/deployments/dep-resume/pause", a.member, status=200)
    spare = await ok(client, "POST", f"{base}/api-keys", a.admin, {"role": "read", "name": "spare"})
    to_patch, to_delete = [await ok(client, "POST", f"{base}/webhook-endpoints", a.admin,
                                    {"url": f"https://93.184.216.34/{name}"}) for name in ("patch", "delete")]
    spare_operator, _ = await create_operator_key(ledger.engine, "tenancy spare", env="test")
    opened = await checkout(client, a, pack="builder")
    await pay(stripe_standin, opened["session_id"])
    [purchase] = await invoices(client, a)
    await fold_all(ledger.engine)
    return World(a=a, b=b, operator=operator_key, entry_id=charge["id"], spare_key_id=spare["id"],
                 reservation_to_settle=settle["id"], reservation_to_release=release["id"],
                 endpoint_to_patch=to_patch["id"], endpoint_to_delete=to_delete["id"],
                 spare_operator_key_id=spare_operator.key_id, purchase_id=purchase["id"])


def own_key(w: World, role: str) -> str:
    return w.operator if role == "operator" else w.a.key(role)


# ---- A: every route is accounted for ---------------------------------------------------------

def test_every_route_has_a_tenancy_case(app: FastAPI) -> None:
    served = app_routes(app)
    # The enumeration itself works (a silent empty set would pass everything below).
    assert ("GET", "/v1/accounts/{account}/balance") in served
    assert ("POST", "/v1/accounts/{account}/charges") in served
    assert len(served) >= len(CASES)

    known = set(CASES) | set(UNSCOPED) | PUBLIC | SIGNED | STATIC
    missing = sorted(served - known)
    assert not missing, f"routes without a tenancy case (add them to CASES, or UNSCOPED/PUBLIC): {missing}"
    stale = sorted((set(CASES) | set(UNSCOPED)) - served)
    assert not stale, f"cases for routes the app no longer serves: {stale}"

    assert all("{account}" in path for _, path in CASES), "an account-scoped case without {account}"
    assert not any("{account}" in path for _, path in set(UNSCOPED) | PUBLIC | SIGNED | STATIC), \
        "an unscoped route names an account"
    # A read key may use no write route: every write is a member's at least (estimate writes nothing).
    weak_writes = [r for r, c in CASES.items() if r[0] in WRITE_METHODS and c.role == "read"
                   and r not in READ_ONLY_POSTS]
    assert not weak_writes, f"write routes declared usable by a read key: {weak_writes}"


# ---- B: another account's keys get 404 -------------------------------------------------------

@pytest.mark.parametrize("route", list(CASES), ids=_ids(CASES))
async def test_another_accounts_keys_get_404_and_change_nothing(
        client: httpx.AsyncClient, world: World, route: tuple[str, str]) -> None:
    case = CASES[route]
    w = world
    before = (await state(client, w.operator, w.a.id), await state(client, w.operator, w.b.id))
    ghost = f"ghost-{secrets.token_hex(6)}"
    for role in ACCOUNT_ROLES:
        r = await send(client, w, route, case, headers=bearer(w.b.key(role)))
        body = assert_problem(r, 404, f"B's {role} key on A's {route}")
        # Indistinguishable from an account that does not exist.
        g = await send(client, w, route, case, headers=bearer(w.b.key(role)), account=ghost)
        ghost_body = assert_problem(g, 404, f"B's {role} key on a missing account's {route}")
        assert r.text.replace(w.a.id, ghost) == g.text, (body, ghost_body)
    after = (await state(client, w.operator, w.a.id), await state(client, w.operator, w.b.id))
    assert after == before, f"{route}: a refused request changed an account"

    # Positive control: the example is a request the owner may make.
    r = await send(client, w, route, case, headers=bearer(own_key(w, case.role)))
    assert 200 <= r.status_code < 300, f"the example for {route} fails for its owner: {r.status_code} {r.text}"


# ---- C: a role too weak gets 403 -------------------------------------------------------------

WEAKER = {r: c for r, c in CASES.items() if c.role != "read"}


@pytest.mark.parametrize("route", list(WEAKER), ids=_ids(WEAKER))
async def test_a_role_too_weak_gets_403_and_changes_nothing(
        client: httpx.AsyncClient, world: World, route: tuple[str, str]) -> None:
    case = CASES[route]
    w = world
    weaker = [role for role in ACCOUNT_ROLES if RANK[role] < RANK[case.role]]
    assert "read" in weaker
    before = await state(client, w.operator, w.a.id)
    for role in weaker:
        r = await send(client, w, route, case, headers=bearer(w.a.key(role)))
        body = assert_problem(r, 403, f"A's {role} key on {route} (needs {case.role})")
        assert body["type"].endswith("/forbidden"), body
    assert await state(client, w.operator, w.a.id) == before, f"{route}: a 403 changed the account"


async def test_account_keys_may_not_open_accounts(client: httpx.AsyncClient, world: World) -> None:
    w = world
    for role in ACCOUNT_ROLES:
        new_id = f"ten-new-{secrets.token_hex(6)}"
        r = await client.post("/v1/accounts", headers=bearer(w.a.key(role)), json={"id": new_id, "name": new_id})
        assert_problem(r, 403, f"POST /v1/accounts with an account {role} key")
        r = await client.get(f"/v1/accounts/{new_id}", headers=bearer(w.operator))
        assert_problem(r, 404, "the account a refused request named")


OPERATOR_ONLY = {r: c for r, c in UNSCOPED.items() if c.role == "operator"}


@pytest.mark.parametrize("route", list(OPERATOR_ONLY), ids=_ids(OPERATOR_ONLY))
async def test_account_keys_may_not_use_operator_routes(client: httpx.AsyncClient, world: World,
                                                        route: tuple[str, str]) -> None:
    w = world
    case = OPERATOR_ONLY[route]
    operator_keys = (await ok(client, "GET", "/v1/api-keys", w.operator, status=200))["data"]
    for role in ACCOUNT_ROLES:
        r = await send(client, w, route, case, headers=bearer(w.a.key(role)))
        assert_problem(r, 403, f"{route} with an account {role} key")
    assert (await ok(client, "GET", "/v1/api-keys", w.operator, status=200))["data"] == operator_keys
    r = await send(client, w, route, case, headers=bearer(w.operator))
    assert 200 <= r.status_code < 300, f"the example for {route} fails for the operator: {r.status_code} {r.text}"


async def test_a_read_key_may_not_meter_usage(client: httpx.AsyncClient, world: World) -> None:
    w = world
    before = await state(client, w.operator, w.a.id)
    r = await client.post("/v1/usage", headers=bearer(w.a.read), json={"events": [{
        "account_id": w.a.id, "operation": "email", "quantity": 1, "idempotency_key": "read-meter"}]})
    assert_problem(r, 403, "POST /v1/usage with a read key")
    assert await state(client, w.operator, w.a.id) == before


# ---- D: no valid key gets 401 ----------------------------------------------------------------

ALL_KEYED = {**CASES, **UNSCOPED}


def _bad_keys(w: World, revoked: str) -> dict[str, dict[str, str]]:
    prefix, _, secret = w.a.admin.rpartition("_")
    tampered = f"{prefix}_{'a' * len(secret) if secret != 'a' * len(secret) else 'b' * len(secret)}"
    unknown = f"cl_test_{'q' * 12}_{'z' * 32}"
    return {
        "no key": {},
        "empty bearer": {"Authorization": "Bearer "},
        "basic auth": {"Authorization": "Basic dXNlcjpwYXNz"},
        "malformed": bearer("not-a-key"),
        "unknown": bearer(unknown),
        "tampered secret": bearer(tampered),
        "revoked": bearer(revoked),
    }


@pytest.mark.parametrize("route", list(ALL_KEYED), ids=_ids(ALL_KEYED))
async def test_no_valid_key_gets_401(client: httpx.AsyncClient, world: World, route: tuple[str, str]) -> None:
    w = world
    case = ALL_KEYED[route]
    # A key that worked (and so sits in the key cache), then revoked through the API.
    made = await ok(client, "POST", f"/v1/accounts/{w.a.id}/api-keys", w.a.admin, {"role": "admin", "name": "gone"})
    revoked: str = made["key"]
    assert (await client.get(f"/v1/accounts/{w.a.id}/balance", headers=bearer(revoked))).status_code == 200
    r = await client.delete(f"/v1/accounts/{w.a.id}/api-keys/{made['id']}", headers=bearer(w.a.admin))
    assert r.status_code == 204, r.text

    before = await state(client, w.operator, w.a.id)
    for what, headers in _bad_keys(w, revoked).items():
        r = await send(client, w, route, case, headers=headers)
        body = assert_problem(r, 401, f"{what} on {route}")
        assert body["type"].endswith("/unauthorized"), body
        assert r.headers.get("www-authenticate", "").startswith("Bearer"), f"{what} on {route}: {r.headers}"
    assert await state(client, w.operator, w.a.id) == before, f"{route}: a 401 changed the account"


@pytest.mark.parametrize("route", sorted(PUBLIC), ids=[f"{m} {p}" for m, p in sorted(PUBLIC)])
async def test_public_routes_need_no_key(client: httpx.AsyncClient, route: tuple[str, str]) -> None:
    method, path = route
    r = await client.request(method, path)
    assert r.status_code == 200, f"{route}: {r.status_code} {r.text[:300]}"


# ---- objects of another account, and /v1/usage ----------------------------------------------

async def test_ids_of_another_account_are_not_found_on_ones_own_path(
        client: httpx.AsyncClient, world: World) -> None:
    w = world
    a, b = f"/v1/accounts/{w.a.id}", f"/v1/accounts/{w.b.id}"
    b_charge = await ok(client, "POST", f"{b}/charges", w.b.member, {"operation": "email", "quantity": 1000})
    b_hold = await ok(client, "POST", f"{b}/reservations", w.b.member, {"operation": "email", "quantity": 1000})
    await ok(client, "POST", f"{b}/deployments", w.b.member, {"deployment_id": "dep-b-only", "instance_type": "cpu-s"})
    for acct, member in ((a, w.a.member), (b, w.b.member)):
        await ok(client, "POST", f"{acct}/deployments", member,
                 {"deployment_id": "dep-shared", "instance_type": "cpu-s"})
    b_read_id = await key_id(client, w.b.read)
    b_endpoint = await ok(client, "POST", f"{b}/webhook-endpoints", w.b.admin, {"url": "https://93.184.216.34/b"})
    before_b = await state(client, w.operator, w.b.id)

    refused = [
        ("GET", f"{a}/entries/{b_charge['id']}/explain", w.a.admin, None),
        ("POST", f"{a}/reservations/{b_hold['id']}/settle", w.a.admin, {"quantity": 1}),
        ("POST", f"{a}/reservations/{b_hold['id']}/release", w.a.admin, None),
        ("POST", f"{a}/deployments/dep-b-only/stop", w.a.admin, None),
        ("POST", f"{a}/deployments/dep-b-only/pause", w.a.admin, None),
        ("DELETE", f"{a}/api-keys/{b_read_id}", w.a.admin, None),
        ("PATCH", f"{a}/webhook-endpoints/{b_endpoint['id']}", w.a.admin, {"enabled": False}),
        ("DELETE", f"{a}/webhook-endpoints/{b_endpoint['id']}", w.a.admin, None),
    ]
    for method, path, key, body in refused:
        r = await client.request(method, path, headers=bearer(key), json=body)
        assert_problem(r, 404, f"{method} {path} (an object of account B)")
    assert await state(client, w.operator, w.b.id) == before_b, "B changed through A's path"
    assert (await client.get(f"{b}/balance", headers=bearer(w.b.read))).status_code == 200, "B's key was revoked"
    deps = {d["id"]: d["status"] for d in (await ok(client, "GET", f"{b}/deployments", w.b.read, status=200))["data"]}
    assert deps["dep-b-only"] == deps["dep-shared"] == "running", deps

    # The same deployment id on two accounts: A's request acts on A's deployment only.
    await ok(client, "POST", f"{a}/deployments/dep-shared/stop", w.a.member, status=200)
    deps = {d["id"]: d["status"] for d in (await ok(client, "GET", f"{b}/deployments", w.b.read, status=200))["data"]}
    assert deps["dep-shared"] == "running", deps


async def test_usage_items_for_another_account_are_rejected_alone(client: httpx.AsyncClient, world: World) -> None:
    w = world
    ghost = f"ghost-{secrets.token_hex(6)}"
    before_a = await state(client, w.operator, w.a.id)
    before_b = await state(client, w.operator, w.b.id)
    r = await client.post("/v1/usage", headers=bearer(w.b.member), json={"events": [
        {"account_id": w.a.id, "operation": "email", "quantity": 1, "idempotency_key": "into-a"},
        {"account_id": w.b.id, "operation": "email", "quantity": 1, "idempotency_key": "own"},
        {"account_id": ghost, "operation": "email", "quantity": 1, "idempotency_key": "into-ghost"},
    ]})
    assert r.status_code == 200, r.text
    into_a, own, into_ghost = r.json()["results"]
    assert into_a["idempotency_key"] == "into-a" and into_a["status"] == "rejected", into_a
    assert into_a["error"]["status"] == 404 and into_a["id"] is None, into_a
    # The same answer as for an account that does not exist.
    assert into_ghost["status"] == "rejected" and into_ghost["error"]["status"] == 404, into_ghost
    assert into_a["error"]["type"] == into_ghost["error"]["type"], (into_a, into_ghost)
    assert own["status"] == "created" and own["amount_ucr"] == 1000, own

    assert await state(client, w.operator, w.a.id) == before_a, "B's member key appended to A"
    version, balance, reserved, *_ = await state(client, w.operator, w.b.id)
    assert (version, balance, reserved) == (before_b[0] + 1, before_b[1] - 1000, before_b[2])
    entries = await ok(client, "GET", f"/v1/accounts/{w.a.id}/ledger?limit=500", w.operator, status=200)
    assert not [e for e in entries["data"] if e["idempotency_key"] in ("into-a", "own", "into-ghost")], entries
