"""Bad input over HTTP: a 4xx ``application/problem+json`` and nothing appended.

Each refused request is checked against the account's stream version, balance and reserved
amount (read with the operator key) before and after: a refused request records nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.ledger.api.conftest import OpenApiAccount, bearer
from tests.ledger.api.conftest import TestAccount as Account

PROBLEM = "application/problem+json"
HUGE = 2**70
Json = dict[str, Any]


@dataclass(frozen=True)
class Acct:
    account: Account
    operator: str

    @property
    def id(self) -> str:
        return self.account.id

    def key(self, role: str) -> str:
        return self.operator if role == "operator" else self.account.key(role)


@pytest_asyncio.fixture(loop_scope="session")
async def acct(api_account: OpenApiAccount, operator_key: str) -> Acct:
    return Acct(await api_account(credits="10", prefix="bad"), operator_key)


async def state(client: httpx.AsyncClient, a: Acct) -> tuple[int, int, int]:
    """(stream version, balance µcr, reserved µcr)."""
    r = await client.get(f"/v1/accounts/{a.id}/balance", headers=bearer(a.operator))
    assert r.status_code == 200, r.text
    b = r.json()
    return b["version"], b["balance_ucr"], b["reserved_ucr"]


def problem(r: httpx.Response, statuses: Collection[int], what: str) -> Json:
    assert r.status_code in statuses, f"{what}: expected {sorted(statuses)}, got {r.status_code}: {r.text}"
    assert r.headers["content-type"].startswith(PROBLEM), f"{what}: {r.headers['content-type']} {r.text}"
    body: Json = r.json()
    assert body["status"] == r.status_code and body["type"] and body["title"] and body["detail"], body
    return body


async def refused(client: httpx.AsyncClient, a: Acct, method: str, path: str, role: str, *,
                  statuses: Collection[int] = (422,), what: str = "", **kw: Any) -> Json:
    """Send a bad request; check it is a problem with one of ``statuses`` and that nothing changed."""
    headers = {**bearer(a.key(role)), **kw.pop("headers", {})}
    before = await state(client, a)
    r = await client.request(method, path.format(account=a.id), headers=headers, **kw)
    body = problem(r, statuses, what or f"{method} {path}")
    assert await state(client, a) == before, f"{what or path}: a refused request changed the account"
    return body


# ---- the table: (what, method, path, role, request, expected statuses, problem type) ---------

@dataclass(frozen=True)
class Bad:
    name: str
    method: str
    path: str
    role: str
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    statuses: frozenset[int] = frozenset({422})
    type: str | None = None


CHARGES = "/v1/accounts/{account}/charges"
ESTIMATE = "/v1/accounts/{account}/estimate"
RESERVE = "/v1/accounts/{account}/reservations"
GRANTS = "/v1/accounts/{account}/grants"
BUDGET = "/v1/accounts/{account}/budget"
LIMITS = "/v1/accounts/{account}/limits/agent/bot"
DEPLOY = "/v1/accounts/{account}/deployments"
JSON_CT = {"Content-Type": "application/json"}
EMAIL = {"operation": "email"}

CASES = [
    # unknown operation slugs
    Bad("unknown operation: charge", "POST", CHARGES, "member", {"operation": "no-such-op", "quantity": 1},
        type="unknown-operation"),
    Bad("unknown operation: estimate", "POST", ESTIMATE, "read", {"operation": "no-such-op", "quantity": 1},
        type="unknown-operation"),
    Bad("unknown operation: reserve", "POST", RESERVE, "member", {"operation": "no-such-op", "quantity": 1},
        type="unknown-operation"),
    Bad("unknown instance type", "POST", DEPLOY, "member", {"deployment_id": "d1", "instance_type": "no-such"},
        type="unknown-operation"),
    Bad("not an instance type", "POST", DEPLOY, "member", {"deployment_id": "d1", "instance_type": "email"}),
    # zero and negative quantities
    Bad("zero quantity", "POST", CHARGES, "member", {**EMAIL, "quantity": 0}, type="invalid-quantity"),
    Bad("negative quantity", "POST", CHARGES, "member", {**EMAIL, "quantity": -1}, type="invalid-quantity"),
    Bad("zero in quantities", "POST", CHARGES, "member",
        {"operation": "gpt-4o", "quantities": {"input_tokens": 0, "output_tokens": 0}}, type="invalid-quantity"),
    Bad("negative in quantities", "POST", CHARGES, "member",
        {"operation": "gpt-4o", "quantities": {"input_tokens": -5, "output_tokens": 10}}, type="invalid-quantity"),
    Bad("zero quantity: reserve", "POST", RESERVE, "member", {**EMAIL, "quantity": 0}, type="invalid-quantity"),
    Bad("negative quantity: estimate", "POST", ESTIMATE, "read", {**EMAIL, "quantity": -1}, type="invalid-quantity"),
    Bad("both quantity and quantities", "POST", CHARGES, "member",
        {**EMAIL, "quantity": 1, "quantities": {"messages": 1}}),
    Bad("no quantity", "POST", CHARGES, "member", EMAIL),
    Bad("unknown dimension", "POST", CHARGES, "member", {**EMAIL, "quantities": {"bogus": 1}}),
    # quantities as JSON floats
    Bad("quantity 1.5", "POST", CHARGES, "member", {**EMAIL, "quantity": 1.5}),
    Bad("quantity 1.0", "POST", CHARGES, "member", {**EMAIL, "quantity": 1.0}),
    Bad("quantity true", "POST", CHARGES, "member", {**EMAIL, "quantity": True}),
    Bad("quantity as a string", "POST", CHARGES, "member", {**EMAIL, "quantity": "1"}),
    Bad("quantities value 1.0", "POST", CHARGES, "member", {**EMAIL, "quantities": {"messages": 1.0}}),
    Bad("quantity 1.0: estimate", "POST", ESTIMATE, "read", {**EMAIL, "quantity": 1.0}),
    Bad("quantity 1.0: reserve", "POST", RESERVE, "member", {**EMAIL, "quantity": 1.0}),
    # money as JSON floats
    Bad("grant amount 1.5", "POST", GRANTS, "operator", {"amount": 1.5, "reason": "t"}),
    Bad("grant amount_ucr 1.0", "POST", GRANTS, "operator", {"amount_ucr": 1.0, "reason": "t"}),
    Bad("grant amount_ucr 1.5", "POST", GRANTS, "operator", {"amount_ucr": 1.5, "reason": "t"}),
    Bad("budget monthly_limit_ucr 5.0", "PUT", BUDGET, "admin", {"monthly_limit_ucr": 5.0}),
    Bad("budget monthly_limit 5.5", "PUT", BUDGET, "admin", {"monthly_limit": 5.5}),
    Bad("limit per_run_ucr 1.0", "PUT", LIMITS, "admin", {"per_run_ucr": 1.0}),
    Bad("limit per_day 2.0", "PUT", LIMITS, "admin", {"per_day": 2.0}),
    Bad("reserve amount 1.0", "POST", RESERVE, "member", {"operation": "email", "amount": 1.0}),
    # booleans are not whole credits
    Bad("grant amount true", "POST", GRANTS, "operator", {"amount": True, "reason": "t"}),
    Bad("budget monthly_limit true", "PUT", BUDGET, "admin", {"monthly_limit": True}),
    Bad("limit per_month false", "PUT", LIMITS, "admin", {"per_month": False}),
    Bad("reserve amount true", "POST", RESERVE, "member", {"operation": "email", "amount": True}),
    Bad("reserve amount_ucr 1.0", "POST", RESERVE, "member", {"operation": "email", "amount_ucr": 1.0}),
    # out-of-range money
    Bad("grant amount 0", "POST", GRANTS, "operator", {"amount": "0", "reason": "t"}),
    Bad("grant amount -1", "POST", GRANTS, "operator", {"amount": "-1", "reason": "t"}),
    Bad("grant amount_ucr 0", "POST", GRANTS, "operator", {"amount_ucr": 0, "reason": "t"}),
    Bad("grant amount_ucr -5", "POST", GRANTS, "operator", {"amount_ucr": -5, "reason": "t"}),
    Bad("grant amount 7 places", "POST", GRANTS, "operator", {"amount": "1.0000001", "reason": "t"}),
    Bad("grant amount and amount_ucr", "POST", GRANTS, "operator", {"amount": "1", "amount_ucr": 1, "reason": "t"}),
    Bad("grant no amount", "POST", GRANTS, "operator", {"reason": "t"}),
    Bad("grant expired already", "POST", GRANTS, "operator",
        {"amount": "1", "reason": "t", "expires_at": "2020-01-01T00:00:00Z"}),
    Bad("budget monthly_limit 0", "PUT", BUDGET, "admin", {"monthly_limit": "0"}),
    Bad("limit per_day -1", "PUT", LIMITS, "admin", {"per_day": "-1"}),
    Bad("limit scope unknown", "PUT", "/v1/accounts/{account}/limits/team/bot", "admin", {"per_run": "1"}),
    Bad("reserve ttl_s 0", "POST", RESERVE, "member", {**EMAIL, "quantity": 1, "ttl_s": 0}),
    # 2**70
    Bad("quantity 2**70", "POST", CHARGES, "member", {**EMAIL, "quantity": HUGE}, type="invalid-quantity"),
    Bad("quantities 2**70", "POST", CHARGES, "member", {**EMAIL, "quantities": {"messages": HUGE}},
        type="invalid-quantity"),
    Bad("quantity 2**70: estimate", "POST", ESTIMATE, "read", {**EMAIL, "quantity": HUGE}),
    Bad("quantity 2**70: reserve", "POST", RESERVE, "member", {**EMAIL, "quantity": HUGE}),
    Bad("quantity 10**15 of gpu-l (cost out of range)", "POST", CHARGES, "member",
        {"operation": "gpu-l", "quantity": 10**15}),
    Bad("grant amount_ucr 2**70", "POST", GRANTS, "operator", {"amount_ucr": HUGE, "reason": "t"}),
    Bad("grant amount 2**70 credits", "POST", GRANTS, "operator", {"amount": str(HUGE), "reason": "t"}),
    Bad("grant amount 2**70 whole credits", "POST", GRANTS, "operator", {"amount": HUGE, "reason": "t"}),
    Bad("grant amount 0 whole credits", "POST", GRANTS, "operator", {"amount": 0, "reason": "t"}),
    Bad("budget monthly_limit -5 whole credits", "PUT", BUDGET, "admin", {"monthly_limit": -5}),
    Bad("budget monthly_limit_ucr 2**70", "PUT", BUDGET, "admin", {"monthly_limit_ucr": HUGE}),
    Bad("reserve amount_ucr 2**70", "POST", RESERVE, "member", {"operation": "email", "amount_ucr": HUGE}),
    # malformed bodies
    Bad("malformed JSON", "POST", CHARGES, "member", content=b'{"operation": "email", "quantity": ',
        headers=JSON_CT, statuses=frozenset({400}), type="malformed-request"),
    Bad("malformed JSON: grant", "POST", GRANTS, "operator", content=b"{amount: 1}", headers=JSON_CT,
        statuses=frozenset({400}), type="malformed-request"),
    Bad("malformed JSON: budget", "PUT", BUDGET, "admin", content=b'{"monthly_limit": "1",}', headers=JSON_CT,
        statuses=frozenset({400}), type="malformed-request"),
    Bad("malformed JSON: usage", "POST", "/v1/usage", "member", content=b'{"events": [', headers=JSON_CT,
        statuses=frozenset({400}), type="malformed-request"),
    Bad("UTF-16 body with a BOM", "POST", CHARGES, "member", content='{"operation": "email", "quantity": 1}'
        .encode("utf-16"), headers=JSON_CT, statuses=frozenset({400}), type="malformed-request"),
    Bad("UTF-16 body without a BOM", "POST", CHARGES, "member", content='{"operation": "email", "quantity": 1}'
        .encode("utf-16-le"), headers=JSON_CT, statuses=frozenset({400}), type="malformed-request"),
    Bad("UTF-32 body", "PUT", BUDGET, "admin", content='{"monthly_limit": "1"}'.encode("utf-32"), headers=JSON_CT,
        statuses=frozenset({400}), type="malformed-request"),
    Bad("Latin-1 body", "POST", CHARGES, "member", content='{"operation": "é", "quantity": 1}'.encode("latin-1"),
        headers=JSON_CT, statuses=frozenset({400}), type="malformed-request"),
    Bad("JSON array body", "POST", CHARGES, "member", [EMAIL], statuses=frozenset({400, 422})),
    Bad("empty body", "POST", CHARGES, "member", content=b"", headers=JSON_CT, statuses=frozenset({400, 422})),
    Bad("JSON null body", "POST", CHARGES, "member", content=b"null", headers=JSON_CT,
        statuses=frozenset({400, 422})),
    Bad("not JSON content type", "POST", CHARGES, "member", content=b'{"operation": "email", "quantity": 1}',
        headers={"Content-Type": "text/plain"}, statuses=frozenset({415}), type="unsupported-media-type"),
    Bad("a form (curl -d without -H)", "PUT", BUDGET, "admin", content=b'{"monthly_limit": "1"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"}, statuses=frozenset({415}),
        type="unsupported-media-type"),
    Bad("no content type", "POST", GRANTS, "operator", content=b'{"amount": "1", "reason": "t"}',
        statuses=frozenset({415}), type="unsupported-media-type"),
    Bad("unknown field", "POST", CHARGES, "member", {**EMAIL, "quantity": 1, "quantiy": 2}),
    Bad("operation too long", "POST", CHARGES, "member", {"operation": "x" * 101, "quantity": 1}),
    Bad("NUL in attribution", "POST", CHARGES, "member", {**EMAIL, "quantity": 1, "attribution": {"agent": "a\x00"}}),
    # budget
    Bad("budget warn_pct == critical_pct", "PUT", BUDGET, "admin",
        {"monthly_limit": "10", "warn_pct": 90, "critical_pct": 90}),
    Bad("budget warn_pct > critical_pct", "PUT", BUDGET, "admin",
        {"monthly_limit": "10", "warn_pct": 95, "critical_pct": 50}),
    Bad("budget warn_pct 0", "PUT", BUDGET, "admin", {"monthly_limit": "10", "warn_pct": 0}),
    Bad("budget critical_pct 101", "PUT", BUDGET, "admin", {"monthly_limit": "10", "critical_pct": 101}),
    # idempotency keys
    Bad("Idempotency-Key header of 256 chars", "POST", CHARGES, "member", {**EMAIL, "quantity": 1},
        headers={"Idempotency-Key": "k" * 256}),
    Bad("idempotency_key body field of 256 chars", "POST", CHARGES, "member",
        {**EMAIL, "quantity": 1, "idempotency_key": "k" * 256}),
    Bad("idempotency key of 1000 chars: grant", "POST", GRANTS, "operator",
        {"amount": "1", "reason": "t"}, headers={"Idempotency-Key": "g" * 1000}),
    Bad("blank Idempotency-Key", "POST", CHARGES, "member", {**EMAIL, "quantity": 1},
        headers={"Idempotency-Key": "   "}),
    Bad("empty idempotency_key", "POST", CHARGES, "member", {**EMAIL, "quantity": 1, "idempotency_key": ""}),
    Bad("header and body keys differ", "POST", CHARGES, "member",
        {**EMAIL, "quantity": 1, "idempotency_key": "body-key"}, headers={"Idempotency-Key": "header-key"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_bad_input_is_refused_and_records_nothing(client: httpx.AsyncClient, acct: Acct, case: Bad) -> None:
    kw: dict[str, Any] = {"headers": case.headers}
    if case.content is not None:
        kw["content"] = case.content
    else:
        kw["json"] = case.json
    body = await refused(client, acct, case.method, case.path, case.role, statuses=case.statuses,
                         what=case.name, **kw)
    if case.type is not None:
        assert body["type"].endswith(f"/{case.type}"), body


async def test_the_table_requests_are_valid_once_fixed(client: httpx.AsyncClient, acct: Acct) -> None:
    """Control: the same routes, keys and shapes with good values succeed (so the 4xx above are the input's)."""
    good = [
        ("POST", CHARGES, "member", {**EMAIL, "quantity": 1}, 201),
        ("POST", CHARGES, "member", {"operation": "gpt-4o", "quantities": {"input_tokens": 5, "output_tokens": 10}},
         201),
        ("POST", ESTIMATE, "read", {**EMAIL, "quantity": 1}, 200),
        ("POST", RESERVE, "member", {**EMAIL, "quantity": 1, "ttl_s": 60}, 201),
        ("POST", RESERVE, "member", {"operation": "email", "amount_ucr": 1}, 201),
        ("POST", GRANTS, "operator", {"amount": "1.5", "reason": "t"}, 201),
        ("POST", GRANTS, "operator", {"amount_ucr": 1, "reason": "t"}, 201),
        ("PUT", BUDGET, "admin", {"monthly_limit_ucr": 5, "warn_pct": 89, "critical_pct": 90}, 200),
        ("PUT", LIMITS, "admin", {"per_run_ucr": 1}, 200),
        ("POST", DEPLOY, "member", {"deployment_id": "d1", "instance_type": "cpu-s"}, 201),
    ]
    for method, path, role, body, status in good:
        r = await client.request(method, path.format(account=acct.id), headers=bearer(acct.key(role)), json=body)
        assert r.status_code == status, f"{method} {path} {body}: {r.status_code} {r.text}"
    # The longest idempotency key allowed, as header and as body field.
    r = await client.post(CHARGES.format(account=acct.id), headers={**bearer(acct.account.member),
                          "Idempotency-Key": "h" * 255}, json={**EMAIL, "quantity": 1})
    assert r.status_code == 201, r.text
    r = await client.post(CHARGES.format(account=acct.id), headers=bearer(acct.account.member),
                          json={**EMAIL, "quantity": 1, "idempotency_key": "b" * 255})
    assert r.status_code == 201, r.text


# ---- unknown plan, coupons ---------------------------------------------------------------

async def test_an_unknown_plan_opens_no_account(client: httpx.AsyncClient, operator_key: str) -> None:
    account_id = f"bad-plan-{secrets.token_hex(6)}"
    r = await client.post("/v1/accounts", headers=bearer(operator_key),
                          json={"id": account_id, "name": account_id, "plan": "no-such-plan"})
    body = problem(r, {422}, "unknown plan")
    assert body["type"].endswith("/unknown-plan"), body
    r = await client.get(f"/v1/accounts/{account_id}", headers=bearer(operator_key))
    problem(r, {404}, "the account of a refused open")


async def test_coupons_that_cannot_be_redeemed_say_why(client: httpx.AsyncClient, acct: Acct) -> None:
    path = "/v1/accounts/{account}/coupons"
    body = await refused(client, acct, "POST", path, "admin", json={"code": "EXPIRED2025"})
    assert body["type"].endswith("/coupon-rejected") and body["reason"] == "expired", body
    assert body["code"] == "EXPIRED2025", body
    body = await refused(client, acct, "POST", path, "admin", json={"code": "NO-SUCH-COUPON"})
    assert body["reason"] == "unknown", body

    r = await client.post(path.format(account=acct.id), headers=bearer(acct.account.admin), json={"code": "WELCOME10"})
    assert r.status_code == 201, r.text
    body = await refused(client, acct, "POST", path, "admin", json={"code": "WELCOME10"})
    assert body["reason"] == "already_redeemed", body


# ---- the usage batch ----------------------------------------------------------------------

def item(account: str, key: str, **kw: Any) -> Json:
    return {"account_id": account, "operation": "email", "quantity": 1, "idempotency_key": key, **kw}


async def test_an_oversize_usage_batch_is_refused_whole(client: httpx.AsyncClient, acct: Acct) -> None:
    events = [item(acct.id, f"big-{i}") for i in range(1001)]
    body = await refused(client, acct, "POST", "/v1/usage", "member", json={"events": events})
    assert "events" in body["detail"], body
    await refused(client, acct, "POST", "/v1/usage", "member", json={"events": []})
    await refused(client, acct, "POST", "/v1/usage", "member", json={"events": "nope"})
    await refused(client, acct, "POST", "/v1/usage", "member", json={})


async def test_a_usage_batch_of_1000_is_accepted(client: httpx.AsyncClient, acct: Acct) -> None:
    version, balance, _ = await state(client, acct)
    r = await client.post("/v1/usage", headers=bearer(acct.account.member),
                          json={"events": [item(acct.id, f"max-{i}") for i in range(1000)]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["created"] * 1000
    assert [x["idempotency_key"] for x in results] == [f"max-{i}" for i in range(1000)]
    after = await state(client, acct)
    assert after[:2] == (version + 1000, balance - 1000 * 1000)


async def test_one_bad_item_rejects_only_itself(client: httpx.AsyncClient, acct: Acct) -> None:
    a = acct.id
    events = [
        item(a, "ok-1"),
        item(a, "bad-op", operation="no-such-op"),
        item(a, "ok-2", quantity=2),
        item(a, "bad-zero", quantity=0),
        item(a, "bad-float", quantity=1.0),
        item(a, "bad-huge", quantity=HUGE),
        {"account_id": a, "operation": "email", "quantity": 1},  # no idempotency key
        item(a, "k" * 256),
        item(a, "bad-field", bogus=1),
        item(a, "bad-future", occurred_at="2099-01-01T00:00:00Z"),
        item(a, "ok-3", quantity=3),
    ]
    version, balance, _ = await state(client, acct)
    r = await client.post("/v1/usage", headers=bearer(acct.account.member), json={"events": events})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == len(events)
    statuses = [x["status"] for x in results]
    assert statuses == ["created", "rejected", "created"] + ["rejected"] * 7 + ["created"], results
    for x in results:
        if x["status"] == "rejected":
            assert x["id"] is None and 400 <= x["error"]["status"] < 500 and x["error"]["type"], x
        else:
            assert x["error"] is None and x["id"], x
    assert results[1]["error"]["type"].endswith("/unknown-operation"), results[1]
    assert [x["idempotency_key"] for x in results[:6]] == ["ok-1", "bad-op", "ok-2", "bad-zero", "bad-float",
                                                          "bad-huge"]
    assert (await state(client, acct))[:2] == (version + 3, balance - 6 * 1000)
    ledger = await client.get(f"/v1/accounts/{a}/ledger?limit=10", headers=bearer(acct.operator))
    keys = [e["idempotency_key"] for e in ledger.json()["data"][:3]]
    assert sorted(keys) == ["ok-1", "ok-2", "ok-3"], keys


# ---- regressions (found by these tests, fixed) --------------------------------------------

async def test_a_grant_expiry_without_a_timezone_is_a_422(client: httpx.AsyncClient, acct: Acct) -> None:
    await refused(client, acct, "POST", GRANTS, "operator",
                  json={"amount": "1", "reason": "t", "expires_at": "2027-01-01T00:00:00"})


async def test_a_usage_time_without_a_timezone_is_a_422_item(client: httpx.AsyncClient, acct: Acct) -> None:
    before = await state(client, acct)
    r = await client.post("/v1/usage", headers=bearer(acct.account.member),
                          json={"events": [item(acct.id, "naive", occurred_at="2026-10-31T12:00:00")]})
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    assert await state(client, acct) == before
    assert result["status"] == "rejected", result
    assert result["error"]["status"] == 422, result


async def test_a_body_that_is_not_json_says_what_to_send(client: httpx.AsyncClient, acct: Acct) -> None:
    """curl's ``-d`` without ``-H 'Content-Type: application/json'`` sends a form: 415, and how to fix it."""
    body = await refused(client, acct, "POST", GRANTS, "operator", statuses={415}, content=b"amount=1&reason=t",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert "Content-Type: application/json" in body["detail"], body
    assert "application/x-www-form-urlencoded" in body["detail"], body
    # JSON under a +json type or with a charset parameter is JSON.
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json", "Application/JSON"):
        r = await client.put(BUDGET.format(account=acct.id), headers={**bearer(acct.account.admin),
                             "Content-Type": content_type}, content=b'{"monthly_limit": "10"}')
        assert r.status_code == 200, (content_type, r.text)


async def test_malformed_json_is_a_400_and_an_invalid_field_a_422(client: httpx.AsyncClient, acct: Acct) -> None:
    body = await refused(client, acct, "POST", CHARGES, "member", statuses={400}, headers=JSON_CT,
                         content=b'{"operation": "email" "quantity": 1}')
    assert body["type"].endswith("/malformed-request") and "not valid JSON" in body["detail"], body
    body = await refused(client, acct, "POST", CHARGES, "member", statuses={400}, headers=JSON_CT,
                         content=b"\xef\xbb\xbf{}")
    assert body["status"] == 400, body  # a UTF-8 BOM: RFC 8259 forbids sending one
    body = await refused(client, acct, "POST", CHARGES, "member", statuses={422}, json={**EMAIL, "quantity": "x"})
    assert body["type"].endswith("/invalid-request"), body


async def test_a_json_integer_is_a_whole_number_of_credits(client: httpx.AsyncClient, acct: Acct) -> None:
    """Every body field that takes credits as a string takes a JSON integer as whole credits."""
    a = acct.id
    r = await client.post(GRANTS.format(account=a), headers=bearer(acct.operator), json={"amount": 2, "reason": "t"})
    assert r.status_code == 201 and r.json()["amount_ucr"] == 2_000_000, r.text
    r = await client.put(BUDGET.format(account=a), headers=bearer(acct.account.admin), json={"monthly_limit": 10})
    assert r.status_code == 200 and r.json()["monthly_limit_ucr"] == 10_000_000, r.text
    r = await client.put(LIMITS.format(account=a), headers=bearer(acct.account.admin),
                         json={"per_run": 1, "per_day": 3, "per_month": 40})
    assert r.status_code == 200, r.text
    assert (r.json()["per_run_ucr"], r.json()["per_day_ucr"], r.json()["per_month_ucr"]) == (
        1_000_000, 3_000_000, 40_000_000), r.json()
    r = await client.post(RESERVE.format(account=a), headers=bearer(acct.account.member),
                          json={"operation": "email", "amount": 1})
    assert r.status_code == 201 and r.json()["held_ucr"] == 1_000_000, r.text
    r = await client.put(BUDGET.format(account=a), headers=bearer(acct.account.admin), json={"monthly_limit": None})
    assert r.status_code == 200 and r.json()["monthly_limit_ucr"] is None, r.text
