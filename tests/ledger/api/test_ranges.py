"""The documented ranges over HTTP: at the edge a command is a 422 and records nothing; inside
them no stored value overflows its BIGINT column."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text

from ledger.money import MAX_SPEND_UCR, MAX_UCR
from ledger.service import Ledger
from ledger.verify import verify_account
from tests.ledger.api.conftest import OpenApiAccount, bearer


async def test_huge_usage_and_grants_never_overflow_a_spend_counter(
        client: httpx.AsyncClient, api_account: OpenApiAccount, operator_key: str, ledger: Ledger) -> None:
    """The reported run: email metered 10^15 at a time (1e18 µcr each) and grants of 2^62 between,
    then items of 3×10^14. It used to end in a 500 ("bigint out of range") on the month's counter."""
    a = await api_account(plan="team")
    op = bearer(operator_key)
    outcomes: list[tuple[str, Any]] = []

    async def version() -> int:
        r = await client.get(f"/v1/accounts/{a.id}/balance", headers=op)
        assert r.status_code == 200, r.text
        v: int = r.json()["version"]
        return v

    async def meter(quantity: int, key: str) -> None:
        before = await version()
        r = await client.post("/v1/usage", headers=op, json={"events": [
            {"account_id": a.id, "operation": "email", "quantity": quantity, "idempotency_key": key}]})
        assert r.status_code == 200, r.text
        (item,) = r.json()["results"]
        outcomes.append((item["status"], item["error"]))
        if item["status"] == "rejected":
            assert await version() == before  # refused: nothing recorded

    async def grant() -> None:
        before = await version()
        r = await client.post(f"/v1/accounts/{a.id}/grants", headers=op,
                              json={"amount_ucr": MAX_UCR, "source": "purchase", "reason": "edge"})
        outcomes.append(("created" if r.status_code == 201 else "rejected", None if r.is_success else r.json()))
        if not r.is_success:
            assert await version() == before

    for i in range(4):
        await meter(10**15, f"big-a{i}")
    await grant()
    for i in range(4):
        await meter(10**15, f"big-b{i}")
    await grant()
    for i in range(8):
        await meter(3 * 10**14, f"mid-{i}")

    refusals = [error for status, error in outcomes if status == "rejected"]
    assert refusals, "the edge was never reached"
    assert {(e["status"], e["type"].rsplit("/", 1)[-1]) for e in refusals} == {(422, "out-of-range")}, refusals
    async with ledger.engine.connect() as conn:
        largest = (await conn.execute(text(
            "SELECT max(spent_ucr) FROM spend_counters WHERE account_id = :a"), {"a": a.id})).scalar_one()
    assert 0 < largest <= MAX_SPEND_UCR
    assert (await verify_account(ledger.engine, a.id)).clean
