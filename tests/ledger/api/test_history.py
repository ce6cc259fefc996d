"""``GET /history``, ``/history/deployments`` and ``/activities`` over HTTP: the fields of API.md,
paging newest first with a stable cursor, freshness, reservations' refunds named by the rule, and
bad input refused as problem+json."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ledger.service import Ledger
from tests.ledger.api.conftest import OpenApiAccount, bearer
from tests.projections.folding import fold_all

PROBLEM = "application/problem+json"
Json = dict[str, Any]


async def get(client: httpx.AsyncClient, path: str, key: str, status: int = 200) -> Json:
    r = await client.get(path, headers=bearer(key))
    assert r.status_code == status, f"{path}: {r.status_code} {r.text}"
    body: Json = r.json()
    return body


async def post(client: httpx.AsyncClient, path: str, key: str, body: Json | None = None) -> Json:
    r = await client.post(path, headers=bearer(key), json=body)
    assert r.status_code in (200, 201), f"{path}: {r.status_code} {r.text}"
    out: Json = r.json()
    return out


async def test_history_lists_executions_newest_first_with_their_fields_and_freshness(
        client: httpx.AsyncClient, ledger: Ledger, api_account: OpenApiAccount) -> None:
    acct = await api_account(credits="5000", prefix="hist")
    base = f"/v1/accounts/{acct.id}"
    charged = [await post(client, f"{base}/charges", acct.member, {
        "operation": "email", "quantity": 10 + i, "attribution": {"execution": f"exec-{i}", "agent": "bot"}})
        for i in range(5)]
    await post(client, f"{base}/deployments", acct.member, {"deployment_id": "dep-h", "instance_type": "gpu-s"})

    # Before the projectors fold them, the new entries are not there, and the page says it lags.
    early = await get(client, f"{base}/history", acct.read)
    assert early["data"] == [] and early["lag_ms"] > 0 and early["has_more"] is False

    await fold_all(ledger.engine)
    page = await get(client, f"{base}/history", acct.read)
    assert page["lag_ms"] == 0 and page["as_of_position"] > early["as_of_position"]
    assert (page["limit"], page["offset"], page["has_more"], page["next_cursor"]) == (50, 0, False, None)
    hour, *emails = page["data"]
    assert (hour["operation"], hour["machine_type"], hour["duration_s"]) == ("gpu-s", "gpu-s", 3600)
    assert hour["attribution"] == {"deployment": "dep-h"} and hour["deployment_id"] == "dep-h"
    emails = [e for e in emails if e["execution_id"].startswith("exec-")]  # not the signup burn
    assert [e["execution_id"] for e in emails] == [f"exec-{i}" for i in reversed(range(5))]
    for e, c in zip(emails, reversed(charged), strict=True):
        assert e["entry_id"] == c["id"] and e["credits_ucr"] == c["amount_ucr"] > 0
        assert e["credits"] == c["amount"] and e["quantities"] == c["quantities"]
        assert e["attribution"] == {"agent": "bot", "execution": e["execution_id"]}
        assert e["operation"] == "email" and e["machine_type"] is None and e["created_at"]

    # Cursor pages of 2 return every execution once, in the same order.
    seen, cursor = [], None
    while True:
        r = await get(client, f"{base}/history?limit=2" + (f"&cursor={cursor}" if cursor else ""), acct.read)
        seen += [e["entry_id"] for e in r["data"]]
        cursor = r["next_cursor"]
        assert r["has_more"] == (cursor is not None)
        if cursor is None:
            break
    assert seen == [e["entry_id"] for e in page["data"]]
    # Offset paging too.
    second = await get(client, f"{base}/history?limit=2&offset=2", acct.read)
    assert [e["entry_id"] for e in second["data"]] == seen[2:4]

    deployments = await get(client, f"{base}/history/deployments", acct.read)
    assert [(d["deployment_id"], d["machine_type"], d["hours"], d["credits_ucr"]) for d in deployments["data"]] == [
        ("dep-h", "gpu-s", 1, hour["credits_ucr"])]
    assert deployments["lag_ms"] == 0 and deployments["next_cursor"] is None


async def test_activities_show_a_reservation_settled_for_less_as_a_positive_named_refund(
        client: httpx.AsyncClient, ledger: Ledger, api_account: OpenApiAccount) -> None:
    acct = await api_account(credits="5000", prefix="acts")
    base = f"/v1/accounts/{acct.id}"
    hold = await post(client, f"{base}/reservations", acct.member,
                      {"operation": "training_h100_per_minute", "quantity": 60})
    settled = await post(client, f"{base}/reservations/{hold['id']}/settle", acct.member, {"quantity": 20})
    await post(client, f"{base}/coupons", acct.admin, {"code": "WELCOME10"})
    await fold_all(ledger.engine)

    feed = await get(client, f"{base}/activities?limit=500", acct.read)
    assert feed["lag_ms"] == 0
    mine = [a for a in feed["data"] if a["reservation_id"] == hold["id"]]
    assert [(a["kind"], a["operation"]) for a in mine] == [
        ("refund", "training_refund_h100"), ("reservation", "training_h100_per_minute")]
    refund, reservation = mine
    assert reservation["amount_ucr"] == -hold["held_ucr"]
    assert refund["amount_ucr"] == settled["released_ucr"] > 0 and refund["amount"] == settled["released"]
    assert refund["amount_ucr"] + reservation["amount_ucr"] == -settled["charge"]["amount_ucr"]
    # The refund shows the balance once settled (its usage included), as the ledger has it now.
    assert refund["balance_after_ucr"] == settled["charge"]["balance_after_ucr"]
    assert refund["detail"]["reason"] == "settled" and refund["detail"]["held_ucr"] == hold["held_ucr"]
    grants = await get(client, f"{base}/activities?kind=grant", acct.read)
    assert {a["kind"] for a in grants["data"]} == {"grant"}
    assert "coupon" in {a["operation"] for a in grants["data"]}
    refunds = await get(client, f"{base}/activities?kind=refund", acct.read)
    assert [a["id"] for a in refunds["data"]] == [refund["id"]]


PAGING = ["limit=0", "limit=501", "offset=-1", "limit=many"]
CURSORS = ["cursor=garbage", "cursor=djE6LTE"]  # the second: "v1:-1", well formed but no version


@pytest.mark.parametrize(("route", "query"), [
    *[("history", q) for q in PAGING + CURSORS],
    *[("history/deployments", q) for q in PAGING],
    *[("activities", q) for q in [*PAGING, *CURSORS, "kind=burn"]],
])
async def test_bad_paging_is_a_problem(client: httpx.AsyncClient, api_account: OpenApiAccount,
                                       route: str, query: str) -> None:
    acct = await api_account(prefix="badpage")
    r = await client.get(f"/v1/accounts/{acct.id}/{route}?{query}", headers=bearer(acct.read))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["status"] == 422


async def test_an_unknown_account_is_a_404_for_the_operator(client: httpx.AsyncClient, operator_key: str) -> None:
    for route in ("history", "history/deployments", "activities"):
        r = await client.get(f"/v1/accounts/no-such-account/{route}", headers=bearer(operator_key))
        assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM), r.text
