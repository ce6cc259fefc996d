"""Every amount in every response appears twice (API.md, Conventions): ``<name>_ucr`` (integer µcr)
and ``<name>`` (the decimal string of credits, six places), nested ones included.

One scenario drives every route the app serves (a rich one of its own: debt, its settlement,
reservations, deployments, a budget and its alerts; then every route's tenancy example, so a new
route is driven as soon as it has its tenancy case), records every JSON body, and walks each of
them at every depth.
"""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest_asyncio
from fastapi import FastAPI

from ledger.service import Ledger
from ledger.testing.stripe import StripeStandIn
from ledger.testing.stripe.signing import header
from tests.ledger.api.conftest import OpenApiAccount, bearer
from tests.ledger.api.test_tenancy import CASES, UNSCOPED, World, app_routes, own_key, send
from tests.ledger.api.test_tenancy import world as world  # the fixture, reused
from tests.projections.folding import fold_all

Json = dict[str, Any]

#: A value that looks like an amount in credits.
CREDITS_TEXT = re.compile(r"^-?\d+\.\d{6}$")
#: ``_ucr`` keys that are not amounts: a price line's exact product, a fraction of µcr (a string).
NOT_AMOUNTS = {"exact_ucr"}
#: Served, but not JSON documents of the API (the OpenAPI pages and their files, Prometheus text, the CSV export:
#: its `credits` column is the accounting seed's fixed shape, tested in test_export.py; the dashboard's files).
NOT_JSON = {("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc"),
            ("GET", "/metrics"), ("GET", "/v1/accounts/{account}/export.csv"), ("*", "/docs/assets"),
            ("GET", "/dashboard"), ("GET", "/dashboard/{asset}"), ("GET", "/dashboard/vendor/{asset}")}


def six_places(ucr: int) -> str:
    """µcr as credits with six places, computed apart from the code under test."""
    return str((Decimal(ucr) / 1_000_000).quantize(Decimal("0.000001")))


def unpaired(node: Any, where: str = "$") -> list[str]:
    """Every place in ``node`` where an amount does not appear in both forms."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            at = f"{where}.{key}"
            if key.endswith("_ucr") and key not in NOT_AMOUNTS:
                name = key[:-4]
                if not (value is None or type(value) is int):
                    found.append(f"{at}: {value!r} is not an integer amount")
                elif name not in node:
                    found.append(f"{at}: no sibling {name!r}")
                elif node[name] != (None if value is None else six_places(value)):
                    found.append(f"{at}: sibling {name!r} is {node[name]!r}, not {value!r} as credits")
            if isinstance(value, str) and CREDITS_TEXT.fullmatch(value) and type(node.get(f"{key}_ucr")) is not int:
                found.append(f"{at}: {value!r} has no {key}_ucr sibling")
            found += unpaired(value, at)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, str) and CREDITS_TEXT.fullmatch(item):
                found.append(f"{where}[{i}]: {item!r} is an amount without its _ucr form")
            found += unpaired(item, f"{where}[]")
    return found


def keys_at(node: Any, where: str = "") -> set[str]:
    """Every key path in ``node`` (``a.b[].c``), to check what the scenario reached."""
    paths: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            paths.add(f"{where}.{key}".lstrip("."))
            paths |= keys_at(value, f"{where}.{key}")
    elif isinstance(node, list):
        for item in node:
            paths |= keys_at(item, f"{where}[]")
    return paths


def template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")


@pytest_asyncio.fixture(loop_scope="session")
async def recorded(app: FastAPI) -> Any:
    """A client on the app that keeps (method, path, status, JSON body or None) of every response."""
    bodies: list[tuple[str, str, int, Any]] = []

    async def keep(r: httpx.Response) -> None:
        await r.aread()
        if r.status_code == 204:
            bodies.append((r.request.method, r.request.url.path, r.status_code, None))
        elif r.headers.get("content-type", "").split(";")[0] in ("application/json", "application/problem+json"):
            bodies.append((r.request.method, r.request.url.path, r.status_code, r.json()))

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ledger.test",
                                 event_hooks={"response": [keep]}) as c:
        yield c, bodies


async def ok(c: httpx.AsyncClient, method: str, path: str, key: str, body: Json | None = None,
             status: int = 200) -> Json:
    r = await c.request(method, path, headers=bearer(key), json=body)
    assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
    out: Json = r.json()
    return out


async def test_every_amount_in_every_response_appears_twice(
        app: FastAPI, recorded: Any, api_account: OpenApiAccount, operator_key: str, world: World,
        ledger: Ledger, stripe_standin: StripeStandIn) -> None:
    c, bodies = recorded
    op = operator_key
    acct = await api_account(plan="team", prefix="amounts")
    base = f"/v1/accounts/{acct.id}"

    # Prices come from the loaded card, through the API.
    unit = (await ok(c, "POST", f"{base}/estimate", acct.read, {"operation": "email", "quantity": 1}))["total_ucr"]
    assert unit > 0
    await ok(c, "POST", f"{base}/grants", op, {"amount": "100000", "source": "purchase", "reason": "t"}, 201)
    await ok(c, "POST", f"{base}/coupons", acct.admin, {"code": "WELCOME10"}, 201)
    await ok(c, "PUT", f"{base}/budget", acct.admin, {"monthly_limit": "900000", "hard_stop": False})
    await ok(c, "PUT", f"{base}/limits/agent/bot", acct.admin, {"per_day": "900000"})
    await ok(c, "PUT", f"{base}/auto-refill", acct.admin, {"enabled": False, "threshold": "5", "amount": "20"})
    await ok(c, "GET", f"{base}/auto-refill", acct.read)
    await ok(c, "POST", f"{base}/auto-refill/payment-method", acct.admin,
             {"success_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/no"})
    account = await ok(c, "GET", base, acct.read)
    assert account["settings"]["budget"]["monthly_limit"] == "900000.000000", account

    charge = await ok(c, "POST", f"{base}/charges", acct.member,
                      {"operation": "email", "quantity": 7, "attribution": {"agent": "bot", "run": "r1"}}, 201)
    hold = await ok(c, "POST", f"{base}/reservations", acct.member, {"operation": "email", "quantity": 10}, 201)
    await ok(c, "POST", f"{base}/reservations/{hold['id']}/settle", acct.member, {"quantity": 4})
    hold = await ok(c, "POST", f"{base}/reservations", acct.member, {"operation": "email", "quantity": 10}, 201)
    await ok(c, "POST", f"{base}/reservations/{hold['id']}/release", acct.member)
    await ok(c, "POST", f"{base}/deployments", acct.member, {"deployment_id": "d1", "instance_type": "cpu-s"}, 201)
    await ok(c, "POST", f"{base}/deployments/d1/pause", acct.member)
    await ok(c, "POST", f"{base}/deployments/d1/resume", acct.member)
    await ok(c, "POST", f"{base}/deployments/d1/stop", acct.member)

    # Metered usage past the balance becomes debt; the next grant settles it from its draws.
    available = (await ok(c, "GET", f"{base}/balance", acct.read))["available_ucr"]
    usage = await ok(c, "POST", "/v1/usage", acct.member, {"events": [{
        "account_id": acct.id, "operation": "email", "quantity": available // unit + 3, "idempotency_key": "debt"}]})
    in_debt = (await ok(c, "GET", f"{base}/balance", acct.read))["debt_ucr"]
    assert in_debt > 0, usage
    await ok(c, "POST", f"{base}/grants", op, {"amount": "5000", "source": "promotion", "reason": "t"}, 201)

    # Over the budget now: its alerts are raised and listed.
    spent = (await ok(c, "PUT", f"{base}/budget", acct.admin, {"monthly_limit": "1"}))["spent_this_month_ucr"]
    await ok(c, "PUT", f"{base}/budget", acct.admin, {"monthly_limit_ucr": spent})
    assert await ledger.raise_due_alerts(acct.id)

    entries = (await ok(c, "GET", f"{base}/ledger?limit=500", acct.read))["data"]
    for e in entries:
        if e["type"] in ("UsageMetered", "DebtSettled", "CreditsPurchased"):
            await ok(c, "GET", f"{base}/entries/{e['id']}/explain", acct.read)
    await ok(c, "GET", f"{base}/entries/{charge['id']}/explain", acct.read)
    await ok(c, "GET", f"{base}/ledger?limit=2", acct.read)
    await ok(c, "POST", "/v1/usage", acct.member, {"events": [{
        "account_id": acct.id, "operation": "email", "quantity": 1, "idempotency_key": "flow-1",
        "attribution": {"flow": "nightly", "execution": "n1"}}]})
    # The read models, folded: executions, deployments and the activity feed of everything above.
    await fold_all(ledger.engine)
    for path in (f"{base}/history?limit=500", f"{base}/history/deployments", f"{base}/activities?limit=500"):
        assert (await ok(c, "GET", path, acct.read))["data"], path
    # Usage, analytics (the budget on course to be hit) and a run's cost.
    for path in (f"{base}/usage?by=integration", f"{base}/analytics?days=7", f"{base}/executions/{charge['id']}",
                 f"{base}/flows/nightly"):
        await ok(c, "GET", path, acct.read)
    for path in (f"{base}/notifications", f"{base}/deployments", "/v1/packs", "/v1/rates", "/v1/me"):
        await ok(c, "GET", path, acct.read)
    await ok(c, "GET", "/healthz", acct.read)
    await ok(c, "GET", "/readyz", acct.read)

    # Then every route's tenancy example, with the owner's key: each route, including new ones.
    for route, case in {**CASES, **UNSCOPED}.items():
        r = await send(c, world, route, case, headers=bearer(own_key(world, case.role)))
        assert 200 <= r.status_code < 300, f"{route}: {r.status_code} {r.text}"

    # Stripe's webhook (no key): an event signed as Stripe signs it.
    event = json.dumps({"id": "evt_amounts", "object": "event", "type": "customer.created",
                        "data": {"object": {"id": "cus_amounts"}}}).encode()
    r = await c.post("/v1/stripe/webhook", content=event,
                     headers={"Content-Type": "application/json",
                              "Stripe-Signature": header(event, stripe_standin.webhook_secret, int(time.time()))})
    assert r.status_code == 200, r.text

    served = {route for route in app_routes(app) if route not in NOT_JSON}
    driven = {(m, p) for m, p, _, _ in bodies}
    not_driven = sorted(route for route in served
                        if not any(m == route[0] and template_regex(route[1]).match(p) for m, p in driven))
    assert not not_driven, f"routes this walk never drove: {not_driven}"

    problems = [f"{m} {p} ({status}) {where}" for m, p, status, body in bodies for where in unpaired(body)]
    assert not problems, "amounts not in both forms:\n" + "\n".join(problems)

    # The walk reached the nested amounts it is about.
    reached = set().union(*(keys_at(body) for *_, body in bodies))
    for path in ("settings.budget.monthly_limit", "data[].details.cost", "data[].details.draws[].amount",
                 "data[].details.debt_added", "data[].details.settled", "recent[].details.cost",
                 "entry.details.cost", "data[].bonus", "data[].price", "data[].currency", "data[].credits",
                 "data[].detail.held", "data[].detail.debt_added", "series[].credits",
                 "suggestions[].figures.monthly_limit", "credits.email", "executions[].credits.total"):
        assert path in reached, f"the scenario never produced {path}"
