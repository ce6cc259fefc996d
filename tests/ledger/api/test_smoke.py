"""The main paths through the API, end to end over HTTP."""

from __future__ import annotations

import httpx

from tests.ledger.api.conftest import OpenApiAccount, bearer


async def test_open_charge_and_read(client: httpx.AsyncClient, api_account: OpenApiAccount) -> None:
    acct = await api_account(credits="10")
    h = bearer(acct.member)
    r = await client.post(f"/v1/accounts/{acct.id}/charges", headers=h,
                          json={"operation": "gpt-4o", "quantities": {"input_tokens": 1000, "output_tokens": 500}})
    assert r.status_code == 201, r.text
    charge = r.json()
    b = (await client.get(f"/v1/accounts/{acct.id}/balance", headers=h)).json()
    assert b["balance_ucr"] == 10_000_000 - charge["amount_ucr"]
    assert b["balance"] == f"{b['balance_ucr'] // 10**6}.{b['balance_ucr'] % 10**6:06d}"
    entries = (await client.get(f"/v1/accounts/{acct.id}/ledger", headers=h)).json()
    assert entries["data"][0]["id"] == charge["id"]
    assert entries["data"][0]["amount_ucr"] == -charge["amount_ucr"]
    ex = (await client.get(f"/v1/accounts/{acct.id}/entries/{charge['id']}/explain", headers=h)).json()
    assert ex["charged_ucr"] == charge["amount_ucr"]


def test_runout_forecast_is_exact_and_bounded() -> None:
    from datetime import UTC, datetime, timedelta

    from ledger.views import runout_at

    now = datetime(2026, 11, 1, tzinfo=UTC)
    assert runout_at(now, 7_000_000, 7_000_000) == now + timedelta(days=7)
    assert runout_at(now, 1_000_000, 7_000_000) == now + timedelta(days=1)
    assert runout_at(now, 0, 5) is None and runout_at(now, 5, 0) is None
    # A tiny burn against a big balance: "never" rather than an overflow (it was a 500).
    assert runout_at(now, 10**15, 42) is None
    assert runout_at(now, 2**62, 1) is None


async def test_balance_with_a_tiny_burn_rate_answers(client: httpx.AsyncClient, api_account: OpenApiAccount) -> None:
    acct = await api_account(credits="1000000000")
    h = bearer(acct.member)
    assert (await client.post(f"/v1/accounts/{acct.id}/charges", headers=h,
                              json={"operation": "email", "quantity": 1})).status_code == 201
    r = await client.get(f"/v1/accounts/{acct.id}/balance", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["runout_at"] is None
    assert [e["version"] for e in r.json()["recent"]] == list(range(r.json()["version"], 0, -1))[:20]


def _sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 if absent)."""
    want = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in metrics.splitlines():
        if line.startswith(name + want + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient,
                                                        api_account: OpenApiAccount) -> None:
    """Requests are labelled by route template (never by raw path: one series per route, not per
    account), 402s and 429s are counted, and a path no route matches is ``unmatched``."""
    acct = await api_account(credits="1")
    h = bearer(acct.member)
    before = (await client.get("/metrics")).text
    ok = await client.post(f"/v1/accounts/{acct.id}/charges", headers=h, json={"operation": "email", "quantity": 1})
    assert ok.status_code == 201, ok.text
    broke = await client.post(f"/v1/accounts/{acct.id}/charges", headers=h,
                              json={"operation": "email", "quantity": 10**9})
    assert broke.status_code == 402, broke.text
    assert (await client.get(f"/v1/accounts/{acct.id}/no-such-thing", headers=h)).status_code == 404
    after = (await client.get("/metrics")).text
    assert acct.id not in after

    def delta(name: str, **labels: str) -> float:
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    route = "/v1/accounts/{account}/charges"
    assert delta("credits_http_requests_total", method="POST", route=route, status="201") == 1
    assert delta("credits_http_requests_total", method="POST", route=route, status="402") == 1
    assert delta("credits_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert delta("credits_http_request_duration_seconds_count", method="POST", route=route) == 2
    assert delta("credits_payment_required_total", reason=broke.json()["reason"]) == 1
    # No relay runs against this database: the charge just made is among what it has not handed over.
    (lag,) = [float(line.split(" ")[1]) for line in after.splitlines()
              if line.startswith("credits_relay_lag_seconds ")]
    assert lag > 0
    # One lag per read model, measured at scrape time (none runs here either: behind, not unknown).
    projected = {line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in after.splitlines()
                 if line.startswith("credits_projection_lag_seconds{")}
    assert set(projected) == {"history", "activities", "usage"} and all(v >= 0 for v in projected.values())
