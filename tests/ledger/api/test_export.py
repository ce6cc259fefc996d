"""``GET /v1/accounts/{account}/export.csv``: a known set of usage, recorded over HTTP with awkward
attribution, comes back row for row as CSV (quoted where it must be, formula-looking text made
safe), with its freshness in headers; bad ranges are 422 problem+json; a range of several pages
streams every row once, in order."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ledger.service import Ledger
from projections.runner import Projections
from tests.ledger.api.conftest import OpenApiAccount, bearer

HEADER = ["date", "workflow", "agent", "model", "input_tokens", "output_tokens", "credits", "status"]
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)  # the session ledger's clock
Json = dict[str, Any]


def credits(ucr: int) -> str:
    return f"{ucr // 1_000_000}.{ucr % 1_000_000:06d}"


def safe(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def rows_of(body: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body, newline="")))


async def meter(client: httpx.AsyncClient, key: str, items: list[Json]) -> list[Json]:
    r = await client.post("/v1/usage", headers=bearer(key), json={"events": items})
    assert r.status_code == 200, r.text
    results: list[Json] = r.json()["results"]
    assert all(x["status"] == "created" for x in results), results
    return results


async def test_a_known_set_comes_back_row_for_row(client: httpx.AsyncClient, api_account: OpenApiAccount,
                                                  ledger: Ledger) -> None:
    a = await api_account(credits="50", prefix="export")
    values = [
        ("quarterly, \"close\"", "agent\nwith a break", "gpt-4o", "workflow"),
        ("=IMPORTXML(A1)", "+agent", "claude-haiku", "flow"),
        ("-10", "@mention", "gpt-4o", "workflow"),
        ("plain", "tab\tinside", "gpt-4o", "flow"),
    ]
    items = [{"account_id": a.id, "operation": op, "quantities": {"input_tokens": 100 * (i + 1),
                                                                   "output_tokens": 7 * i},
              "attribution": {name: flow, "agent": agent},
              "occurred_at": (T0 - timedelta(hours=4 - i)).isoformat(), "idempotency_key": f"exp-{i}"}
             for i, (flow, agent, op, name) in enumerate(values)]
    results = await meter(client, a.member, items)
    expected = [[f"2026-11-01T{5 + i:02d}:00:00Z", safe(flow), safe(agent), op, str(100 * (i + 1)), str(7 * i),
                 credits(results[i]["amount_ucr"]), "metered"] for i, (flow, agent, op, _) in enumerate(values)]
    charge = await client.post(f"/v1/accounts/{a.id}/charges", headers=bearer(a.member),
                               json={"operation": "email", "quantity": 40, "attribution": {"workflow": "-x,y"}})
    assert charge.status_code == 201, charge.text
    # The fixture burnt the signup credits with metered email, at 09:00 too, before the charge.
    entries = (await client.get(f"/v1/accounts/{a.id}/ledger?limit=500", headers=bearer(a.read))).json()["data"]
    expected += [["2026-11-01T09:00:00Z", "", "", "email", "0", "0", credits(-e["amount_ucr"]), "metered"]
                 for e in entries if e["idempotency_key"] == "burn-signup"]
    expected.append(["2026-11-01T09:00:00Z", "'-x,y", "", "email", "0", "0", credits(charge.json()["amount_ucr"]),
                     "charged"])
    await Projections(ledger.engine).catch_up()

    r = await client.get(f"/v1/accounts/{a.id}/export.csv", headers=bearer(a.read))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == f'attachment; filename="{a.id}-usage.csv"'
    assert int(r.headers["x-as-of-position"]) > 0
    assert r.headers["x-lag-ms"] == "0"
    assert rows_of(r.text) == [HEADER, *expected]
    # From inclusive, to exclusive.
    r = await client.get(f"/v1/accounts/{a.id}/export.csv", headers=bearer(a.read),
                         params={"from": "2026-11-01T05:00:00Z", "to": "2026-11-01T07:00:00+00:00"})
    assert r.status_code == 200, r.text
    assert rows_of(r.text) == [HEADER, *expected[:2]]
    assert "from-20261101T050000Z-to-20261101T070000Z" in r.headers["content-disposition"]


@pytest.mark.parametrize(("params", "says"), [
    ({"from": "2026-11-02", "to": "2026-11-01"}, "after"),
    ({"from": "last tuesday"}, "from"),
    ({"to": "2026-02-30"}, "to"),
    ({"from": "2026-11-01T09:00:00"}, "offset"),
    ({"from": "x" * 65}, "from"),
])
async def test_a_bad_range_is_a_422_problem(client: httpx.AsyncClient, api_account: OpenApiAccount,
                                            params: dict[str, str], says: str) -> None:
    a = await api_account(prefix="export")
    r = await client.get(f"/v1/accounts/{a.id}/export.csv", headers=bearer(a.read), params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert says in r.text


async def test_several_pages_stream_every_row_once_in_order(client: httpx.AsyncClient, api_account: OpenApiAccount,
                                                            ledger: Ledger) -> None:
    a = await api_account(credits="1000", prefix="export")
    n = 2500  # three pages of the export
    for start in range(0, n, 1000):
        await meter(client, a.member, [
            {"account_id": a.id, "operation": "sms", "quantity": 1, "attribution": {"run": f"r{i}", "agent": f"a{i}"},
             "occurred_at": (T0 - timedelta(days=2) + timedelta(seconds=i)).isoformat(),
             "idempotency_key": f"many-{i}"} for i in range(start, min(n, start + 1000))])
    await Projections(ledger.engine).catch_up()
    async with client.stream("GET", f"/v1/accounts/{a.id}/export.csv", headers=bearer(a.read),
                             params={"to": "2026-10-31"}) as r:
        assert r.status_code == 200
        pieces = [piece async for piece in r.aiter_text()]
    lines = rows_of("".join(pieces))
    assert lines[0] == HEADER
    assert [row[2] for row in lines[1:]] == [f"a{i}" for i in range(n)]
    assert [row[0] for row in lines[1:]] == [
        (T0 - timedelta(days=2) + timedelta(seconds=i)).isoformat().replace("+00:00", "Z") for i in range(n)]
