"""``workflow`` is the attribution's ``flow`` under another name: accepted on every input that takes
an attribution (charges, usage batches, estimates, reservations), recorded and answered as ``flow``;
both at once is a 422 that records nothing; the two spellings of one request are the same request
for idempotency."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from ledger.events import Attribution
from tests.ledger.api.conftest import OpenApiAccount, bearer

Json = dict[str, Any]
EMAIL = {"operation": "email", "quantity": 1000}


async def entries(client: httpx.AsyncClient, key: str, account: str) -> list[Json]:
    r = await client.get(f"/v1/accounts/{account}/ledger?limit=500", headers=bearer(key))
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def test_the_event_model_takes_workflow_as_flow() -> None:
    assert Attribution.model_validate({"workflow": "nightly"}) == Attribution(flow="nightly")
    assert Attribution.model_validate({"workflow": "nightly"}).model_dump(exclude_none=True) == {"flow": "nightly"}


async def test_a_charge_with_workflow_is_recorded_under_flow(
        client: httpx.AsyncClient, api_account: OpenApiAccount) -> None:
    a = await api_account(credits="10", prefix="alias")
    r = await client.post(f"/v1/accounts/{a.id}/charges", headers=bearer(a.member),
                          json={**EMAIL, "attribution": {"workflow": "weekly, \"digest\"", "agent": "mailer"}})
    assert r.status_code == 201, r.text
    newest = (await entries(client, a.read, a.id))[0]
    assert newest["id"] == r.json()["id"]
    assert newest["attribution"] == {"flow": "weekly, \"digest\"", "agent": "mailer"}


async def test_a_usage_item_with_workflow_is_recorded_under_flow(
        client: httpx.AsyncClient, api_account: OpenApiAccount, operator_key: str) -> None:
    a = await api_account(credits="10", prefix="alias")
    r = await client.post("/v1/usage", headers=bearer(operator_key), json={"events": [
        {"account_id": a.id, **EMAIL, "attribution": {"workflow": "onboarding"}, "idempotency_key": "w-1"},
        {"account_id": a.id, **EMAIL, "attribution": {"flow": "onboarding"}, "idempotency_key": "f-1"},
    ]})
    assert [x["status"] for x in r.json()["results"]] == ["created", "created"], r.text
    by_key = {e["idempotency_key"]: e["attribution"] for e in await entries(client, a.read, a.id)}
    assert by_key["w-1"] == by_key["f-1"] == {"flow": "onboarding"}


async def test_flow_and_workflow_together_are_refused_and_record_nothing(
        client: httpx.AsyncClient, api_account: OpenApiAccount, operator_key: str) -> None:
    a = await api_account(credits="10", prefix="alias")
    before = await entries(client, a.read, a.id)
    both = {"flow": "a", "workflow": "a"}
    r = await client.post(f"/v1/accounts/{a.id}/charges", headers=bearer(a.member),
                          json={**EMAIL, "attribution": both})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "workflow" in r.text
    r = await client.post("/v1/usage", headers=bearer(operator_key), json={"events": [
        {"account_id": a.id, **EMAIL, "attribution": both, "idempotency_key": "both-1"}]})
    result = r.json()["results"][0]
    assert result["status"] == "rejected", r.text
    assert "workflow" in str(result["error"])
    # Too long under either name: the same 422.
    r = await client.post(f"/v1/accounts/{a.id}/charges", headers=bearer(a.member),
                          json={**EMAIL, "attribution": {"workflow": "x" * 201}})
    assert r.status_code == 422, r.text
    assert await entries(client, a.read, a.id) == before


async def test_the_two_spellings_are_one_request_for_idempotency(
        client: httpx.AsyncClient, api_account: OpenApiAccount) -> None:
    a = await api_account(credits="10", prefix="alias")
    h = {**bearer(a.member), "Idempotency-Key": f"alias-{secrets.token_hex(6)}"}
    first = await client.post(f"/v1/accounts/{a.id}/charges", headers=h,
                              json={**EMAIL, "attribution": {"flow": "billing"}})
    again = await client.post(f"/v1/accounts/{a.id}/charges", headers=h,
                              json={**EMAIL, "attribution": {"workflow": "billing"}})
    assert first.status_code == 201, first.text
    assert again.status_code == 201, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    other = await client.post(f"/v1/accounts/{a.id}/charges", headers=h,
                              json={**EMAIL, "attribution": {"workflow": "other"}})
    assert other.status_code == 409, other.text
