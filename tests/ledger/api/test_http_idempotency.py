"""Idempotency over HTTP: the same key and body replay the first response and append nothing; the
same key with another body is a 409; concurrent duplicates append once.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx

from tests.ledger.api.conftest import OpenApiAccount, bearer
from tests.ledger.api.conftest import TestAccount as Account

PROBLEM = "application/problem+json"
REPLAYED = "Idempotent-Replayed"
Json = dict[str, Any]
EMAIL_1 = {"operation": "email", "quantity": 1000}  # 1 credit


async def state(client: httpx.AsyncClient, operator: str, account: str) -> tuple[int, int]:
    """(stream version, balance µcr)."""
    r = await client.get(f"/v1/accounts/{account}/balance", headers=bearer(operator))
    assert r.status_code == 200, r.text
    return r.json()["version"], r.json()["balance_ucr"]


async def entries_with_key(client: httpx.AsyncClient, operator: str, account: str, key: str) -> list[Json]:
    r = await client.get(f"/v1/accounts/{account}/ledger?limit=500", headers=bearer(operator))
    assert r.status_code == 200, r.text
    return [e for e in r.json()["data"] if e["idempotency_key"] == key]


def new_key() -> str:
    return f"idem-{secrets.token_hex(8)}"


def charges(a: Account) -> str:
    return f"/v1/accounts/{a.id}/charges"


async def test_a_replayed_charge_returns_the_first_response_and_appends_nothing(
        client: httpx.AsyncClient, api_account: OpenApiAccount, operator_key: str) -> None:
    a = await api_account(credits="10", prefix="idem")
    key = new_key()
    h = {**bearer(a.member), "Idempotency-Key": key}
    version, balance = await state(client, operator_key, a.id)

    first = await client.post(charges(a), headers=h, json=EMAIL_1)
    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    assert await state(client, operator_key, a.id) == (version + 1, balance - 1_000_000)

    # Other activity in between: the replay still answers with the first response.
    other = await client.post(charges(a), headers=bearer(a.member), json=EMAIL_1)
    assert other.status_code == 201, other.text
    mid = await state(client, operator_key, a.id)

    second = await client.post(charges(a), headers=h, json=EMAIL_1)
    assert second.status_code == 201, second.text
    assert second.headers.get(REPLAYED) == "true"
    assert second.json() == first.json()
    assert second.json()["balance_after_ucr"] == balance - 1_000_000
    assert await state(client, operator_key, a.id) == mid, "a replay appended"
    assert len(await entries_with_key(client, operator_key, a.id, key)) == 1


async def test_the_same_key_with_another_body_is_a_409(
        client: httpx.AsyncClient, api_account: OpenApiAccount, operator_key: str) -> None:
    a = await api_account(credits="10", prefix="idem")
    key = new_key()
    h = {**bearer(a.member), "Idempotency-Key": key}
    first = await client.post(charges(a), headers=h, json=EMAIL_1)
    assert first.status_code == 201, first.text
    before = await state(client, operator_key, a.id)

    others: list[tuple[str, Json]] = [
        (charges(a), {"operation": "email", "quantity": 1001}),
        (charges(a), {"operation": "sms", "quantity": 1000}),
        (charges(a), {**EMAIL_1, "attribution": {"agent": "other"}}),
        (charges(a), {"operation": "email", "quantities": {"messages": 2000}}),
        (f"/v1/accounts/{a.id}/reservations", EMAIL_1),  # same key, another kind of request
    ]
    for path, body in others:
        r = await client.post(path, headers=h, json=body)
        assert r.status_code == 409, f"{path} {body}: {r.status_code} {r.text}"
        assert r.headers["content-type"].startswith(PROBLEM)
        problem = r.json()
        assert problem["status"] == 409 and problem["type"].endswith("/idempotency-conflict"), problem
        assert REPLAYED not in r.headers
    assert await state(client, operator_key, a.id) == before, "a 409 appended"
    # The first request still replays after the conflicts.
    again = await client.post(charges(a), headers=h, json=EMAIL_1)
    assert again.status_code == 201 and again.json() == first.json(), again.text


async def test_concurrent_identical_requests_append_once(
        client: httpx.AsyncClient, api_account: OpenApiAccount, operator_key: str) -> None:
    a = await api_account(credits="100", prefix="idem")
    key = new_key()
    h = {**bearer(a.member), "Idempotency-Key": key}
    version, balance = await state(client, operator_key, a.id)

    responses = await asyncio.gather(*[client.post(charges(a), headers=h, json=EMAIL_1) for _ in range(20)])
    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses if r.status_code != 201]
    bodies = [r.json() for r in responses]
    assert len({b["id"] for b in bodies}) == 1, {b["id"] for b in bodies}
    assert all(b == bodies[0] for b in bodies)
    originals = [r for r in responses if r.headers.get(REPLAYED) != "true"]
    assert len(originals) == 1, f"{len(originals)} responses claim to be the original"
    assert await state(client, operator_key, a.id) == (version + 1, balance - 1_000_000)
    assert len(await entries_with_key(client, operator_key, a.id, key)) == 1


async def test_the_body_field_is_an_idempotency_key_too(
        client: httpx.AsyncClient, api_account: OpenApiAccount, operator_key: str) -> None:
    a = await api_account(credits="10", prefix="idem")
    key = new_key()
    version, balance = await state(client, operator_key, a.id)
    body = {**EMAIL_1, "idempotency_key": key}
    first = await client.post(charges(a), headers=bearer(a.member), json=body)
    assert first.status_code == 201 and REPLAYED not in first.headers, first.text
    second = await client.post(charges(a), headers=bearer(a.member), json=body)
    assert second.status_code == 201 and second.headers.get(REPLAYED) == "true", second.text
    assert second.json() == first.json()
    # The header and the body field name one key: either form replays the other.
    third = await client.post(charges(a), headers={**bearer(a.member), "Idempotency-Key": key}, json=EMAIL_1)
    assert third.status_code == 201 and third.headers.get(REPLAYED) == "true", third.text
    assert third.json() == first.json()
    both = await client.post(charges(a), headers={**bearer(a.member), "Idempotency-Key": key}, json=body)
    assert both.status_code == 201 and both.json() == first.json(), both.text
    # A different body under the body-field key is a conflict.
    r = await client.post(charges(a), headers=bearer(a.member), json={**body, "quantity": 7})
    assert r.status_code == 409, r.text
    assert await state(client, operator_key, a.id) == (version + 1, balance - 1_000_000)


async def test_a_replayed_usage_batch_says_replayed(
        client: httpx.AsyncClient, api_account: OpenApiAccount, operator_key: str) -> None:
    a = await api_account(credits="10", prefix="idem")
    run = secrets.token_hex(4)
    events = [{"account_id": a.id, "operation": "email", "quantity": i + 1, "idempotency_key": f"{run}-{i}"}
              for i in range(5)]
    version, balance = await state(client, operator_key, a.id)
    first = await client.post("/v1/usage", headers=bearer(a.member), json={"events": events})
    assert first.status_code == 200, first.text
    created = first.json()["results"]
    assert [x["status"] for x in created] == ["created"] * 5
    after = await state(client, operator_key, a.id)
    assert after == (version + 5, balance - 15 * 1000)

    again = await client.post("/v1/usage", headers=bearer(a.member), json={"events": events})
    assert again.status_code == 200, again.text
    replayed = again.json()["results"]
    assert [x["status"] for x in replayed] == ["replayed"] * 5
    assert [(x["idempotency_key"], x["id"], x["amount_ucr"]) for x in replayed] == \
        [(x["idempotency_key"], x["id"], x["amount_ucr"]) for x in created]
    assert await state(client, operator_key, a.id) == after, "a replayed batch appended"

    # Overlap: old items replay, a new one is created, a reused key with another body is rejected.
    mixed = [events[0], {**events[1], "quantity": 99},
             {"account_id": a.id, "operation": "email", "quantity": 1, "idempotency_key": f"{run}-new"}]
    r = await client.post("/v1/usage", headers=bearer(a.member), json={"events": mixed})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["status"] for x in res] == ["replayed", "rejected", "created"], res
    assert res[1]["error"]["status"] == 409, res[1]
    assert await state(client, operator_key, a.id) == (after[0] + 1, after[1] - 1000)


async def test_keys_are_per_account(client: httpx.AsyncClient, api_account: OpenApiAccount,
                                    operator_key: str) -> None:
    a = await api_account(credits="10", prefix="idem")
    b = await api_account(credits="10", prefix="idem")
    key = new_key()
    ra = await client.post(charges(a), headers={**bearer(a.member), "Idempotency-Key": key}, json=EMAIL_1)
    rb = await client.post(charges(b), headers={**bearer(b.member), "Idempotency-Key": key},
                           json={"operation": "email", "quantity": 2000})
    assert ra.status_code == rb.status_code == 201, (ra.text, rb.text)
    assert REPLAYED not in rb.headers, "B got A's response"
    assert ra.json()["id"] != rb.json()["id"]
    assert (await state(client, operator_key, b.id))[1] == 8_000_000


async def test_a_refused_charge_does_not_use_up_its_key(
        client: httpx.AsyncClient, api_account: OpenApiAccount, operator_key: str) -> None:
    a = await api_account(credits="1", prefix="idem")
    key = new_key()
    h = {**bearer(a.member), "Idempotency-Key": key}
    big = {"operation": "email", "quantity": 2000}  # 2 credits, 1 held
    r = await client.post(charges(a), headers=h, json=big)
    assert r.status_code == 402, r.text
    before = await state(client, operator_key, a.id)
    r = await client.post(charges(a), headers=h, json=big)
    assert r.status_code == 402 and REPLAYED not in r.headers, r.text
    assert await state(client, operator_key, a.id) == before
    r = await client.post(f"/v1/accounts/{a.id}/grants", headers=bearer(operator_key),
                          json={"amount": "5", "reason": "top-up"})
    assert r.status_code == 201, r.text
    r = await client.post(charges(a), headers=h, json=big)
    assert r.status_code == 201 and REPLAYED not in r.headers, r.text
    assert r.json()["balance_after_ucr"] == 4_000_000


async def test_other_writes_replay_too(client: httpx.AsyncClient, api_account: OpenApiAccount,
                                       operator_key: str) -> None:
    a = await api_account(credits="10", prefix="idem")
    writes: list[tuple[str, str, str, Json, int]] = [
        ("POST", f"/v1/accounts/{a.id}/grants", operator_key, {"amount": "2", "reason": "goodwill"}, 201),
        ("PUT", f"/v1/accounts/{a.id}/budget", a.admin, {"monthly_limit": "100"}, 200),
        ("PUT", f"/v1/accounts/{a.id}/limits/agent/bot", a.admin, {"per_run": "1"}, 200),
        ("POST", f"/v1/accounts/{a.id}/reservations", a.member, EMAIL_1, 201),
        ("POST", f"/v1/accounts/{a.id}/deployments", a.member, {"deployment_id": "d", "instance_type": "cpu-s"}, 201),
        ("POST", f"/v1/accounts/{a.id}/coupons", a.admin, {"code": "WELCOME10"}, 201),
    ]
    for method, path, key, body, status in writes:
        h = {**bearer(key), "Idempotency-Key": new_key()}
        first = await client.request(method, path, headers=h, json=body)
        assert first.status_code == status and REPLAYED not in first.headers, f"{path}: {first.text}"
        before = await state(client, operator_key, a.id)
        second = await client.request(method, path, headers=h, json=body)
        assert second.status_code == status, f"{path}: {second.text}"
        assert second.headers.get(REPLAYED) == "true", f"{path}: {second.headers}"
        assert await state(client, operator_key, a.id) == before, f"{path}: a replay appended"
        if method == "POST" and "deployments" not in path:
            assert second.json() == first.json(), path


async def test_a_replayed_webhook_endpoint_is_created_once(
        client: httpx.AsyncClient, api_account: OpenApiAccount, operator_key: str) -> None:
    a = await api_account(prefix="idem")
    path = f"/v1/accounts/{a.id}/webhook-endpoints"
    body = {"url": "https://93.184.216.34/hooks"}
    for how in ("header", "body"):
        key = new_key()
        h = {**bearer(a.admin), "Idempotency-Key": key} if how == "header" else bearer(a.admin)
        sent = body if how == "header" else {**body, "idempotency_key": key}
        first = await client.post(path, headers=h, json=sent)
        assert first.status_code == 201, first.text
        second = await client.post(path, headers=h, json=sent)
        assert second.status_code == 201, second.text
        assert second.headers.get(REPLAYED) == "true", f"{how}: {second.headers}"
        assert second.json()["id"] == first.json()["id"], how
    listed = await client.get(path, headers=bearer(operator_key))
    assert len(listed.json()["data"]) == 2, listed.json()


async def test_settle_and_release_replay(client: httpx.AsyncClient, api_account: OpenApiAccount,
                                         operator_key: str) -> None:
    a = await api_account(credits="10", prefix="idem")
    base = f"/v1/accounts/{a.id}/reservations"
    holds = []
    for _ in range(2):
        r = await client.post(base, headers=bearer(a.member), json=EMAIL_1)
        assert r.status_code == 201, r.text
        holds.append(r.json()["id"])
    for path, body in ((f"{base}/{holds[0]}/settle", {"quantity": 400}), (f"{base}/{holds[1]}/release", None)):
        h = {**bearer(a.member), "Idempotency-Key": new_key()}
        first = await client.post(path, headers=h, json=body)
        assert first.status_code == 200 and REPLAYED not in first.headers, first.text
        before = await state(client, operator_key, a.id)
        second = await client.post(path, headers=h, json=body)
        assert second.status_code == 200 and second.headers.get(REPLAYED) == "true", second.text
        assert second.json() == first.json()
        assert await state(client, operator_key, a.id) == before
    assert await state(client, operator_key, a.id) == (before[0], 10_000_000 - 400_000)


async def test_opening_an_account_without_an_id_replays(client: httpx.AsyncClient, operator_key: str) -> None:
    h = {**bearer(operator_key), "Idempotency-Key": new_key()}
    name = f"idem-open-{secrets.token_hex(4)}"
    first = await client.post("/v1/accounts", headers=h, json={"name": name})
    assert first.status_code == 201, first.text
    second = await client.post("/v1/accounts", headers=h, json={"name": name})
    assert second.status_code == 201, second.text
    assert second.headers.get(REPLAYED) == "true", second.headers
    assert second.json()["id"] == first.json()["id"], "a retry opened a second account"


# ---- one key, one rule: the header's bytes are UTF-8, header and body normalised alike ---------

def raw_headers(api_key: str, idempotency_key: bytes) -> dict[bytes, bytes]:
    """Headers with the Idempotency-Key as bytes on the wire (any bytes, not only ASCII)."""
    return {b"Authorization": f"Bearer {api_key}".encode(), b"Idempotency-Key": idempotency_key}


async def test_the_header_and_body_forms_of_a_key_are_one_key(
        client: httpx.AsyncClient, api_account: OpenApiAccount, operator_key: str) -> None:
    """A non-ASCII key in the header (UTF-8 bytes) and in the body; a padded key (HTTP strips a
    header's spaces); a key typed decomposed (NFD) and composed (NFC): each pair is one key."""
    a = await api_account(credits="10", prefix="idem")
    tag = secrets.token_hex(4)
    pairs: list[tuple[Json, Json, str]] = [
        ({"Idempotency-Key": f"ключ-9-{tag}".encode()}, {}, f"ключ-9-{tag}"),
        ({}, {"idempotency_key": f"  pad-x-{tag} \t"}, f"pad-x-{tag}"),
        ({"Idempotency-Key": f"cafe\u0301-{tag}".encode()}, {"idempotency_key": f"café-{tag}"}, f"café-{tag}"),
    ]
    for first_headers, first_body, key in pairs:
        version, balance = await state(client, operator_key, a.id)
        first = await client.post(charges(a), headers={**bearer(a.member), **first_headers},
                                  json={**EMAIL_1, **first_body})
        assert first.status_code == 201, first.text
        # The other form of the same key: a replay with the same id, nothing appended.
        other_forms: list[tuple[Json, Json]] = [({}, {"idempotency_key": key}),
                                                ({"Idempotency-Key": f" {key} ".encode()}, {})]
        for headers, body in other_forms:
            again = await client.post(charges(a), headers={**bearer(a.member), **headers}, json={**EMAIL_1, **body})
            assert again.status_code == 201, again.text
            assert again.headers.get(REPLAYED) == "true", (key, headers, body)
            assert again.json()["id"] == first.json()["id"]
        assert await state(client, operator_key, a.id) == (version + 1, balance - 1_000_000)
        assert [e["id"] for e in await entries_with_key(client, operator_key, a.id, key)] == [first.json()["id"]]


async def test_a_usage_item_key_follows_the_same_rule(
        client: httpx.AsyncClient, api_account: OpenApiAccount, operator_key: str) -> None:
    a = await api_account(credits="10", prefix="idem")
    key = f"ключ-{secrets.token_hex(4)}"
    item = {"account_id": a.id, "operation": "email", "quantity": 1000}
    first = await client.post("/v1/usage", headers=bearer(a.member),
                              json={"events": [{**item, "idempotency_key": key}]})
    again = await client.post("/v1/usage", headers=bearer(a.member),
                              json={"events": [{**item, "idempotency_key": f"\t{key}  "}]})
    (r1,), (r2,) = first.json()["results"], again.json()["results"]
    assert (r1["status"], r2["status"]) == ("created", "replayed"), (r1, r2)
    assert r1["id"] == r2["id"] and r2["idempotency_key"] == key
    # The same key through a charge's header is the same key on the account: a 409 (another request).
    r = await client.post(charges(a), headers=raw_headers(a.member, key.encode()), json=EMAIL_1)
    assert r.status_code == 409, r.text


async def test_a_header_that_is_not_utf8_is_a_400_and_records_nothing(
        client: httpx.AsyncClient, api_account: OpenApiAccount, operator_key: str) -> None:
    a = await api_account(credits="10", prefix="idem")
    before = await state(client, operator_key, a.id)
    for raw in (b"\xff\xfekey", "ключ".encode("cp1251"), b"k\xc3"):
        r = await client.post(charges(a), headers=raw_headers(a.member, raw), json=EMAIL_1)
        assert r.status_code == 400, r.text
        assert r.headers["content-type"].startswith(PROBLEM)
        assert r.json()["type"].endswith("/malformed-request") and "UTF-8" in r.json()["detail"], r.json()
    for key in (" \t ", "k" * 256, "ж" * 256):  # blank, or too long once decoded
        r = await client.post(charges(a), headers=raw_headers(a.member, key.encode()), json=EMAIL_1)
        assert r.status_code == 422, r.text
    # 255 characters of Cyrillic are 510 bytes: still a key (the limit is in characters, header or body).
    r = await client.post(charges(a), headers=raw_headers(a.member, ("ж" * 255).encode()), json=EMAIL_1)
    assert r.status_code == 201, r.text
    assert await state(client, operator_key, a.id) == (before[0] + 1, before[1] - 1_000_000)
