"""The SDK against a live server: balance, iteration over pages, estimate, 402s, retries, the gate."""

from __future__ import annotations

import httpx
import pytest

from ledger.client import (
    AccountRequiredError,
    AsyncClient,
    Client,
    IdempotencyConflictError,
    LedgerConnectionError,
    PaymentRequiredError,
    PermissionDeniedError,
)
from tests.ledger.client.conftest import Live, NewAccount


def test_balance_estimate_and_charge(live: Live, new_account: NewAccount) -> None:
    acct = new_account("10")
    with Client(live.base_url, acct.member_key) as client:
        assert client.account_id == acct.id  # discovered from the key
        b = client.credits.balance()
        assert (b.balance, b.balance_ucr, b.available_ucr) == ("10.000000", 10_000_000, 10_000_000)
        est = client.credits.estimate("email", 1000)
        assert (est.total_ucr, est.sufficient) == (1_000_000, True)
        charge = client.usage.charge("email", 1000, attribution={"agent": "bot"})
        assert (charge.amount_ucr, charge.balance_after_ucr, charge.replayed) == (1_000_000, 9_000_000, False)
        assert client.credits.balance().balance_ucr == 9_000_000


def test_payment_required_error_carries_the_fields(live: Live, new_account: NewAccount) -> None:
    acct = new_account("1")
    with Client(live.base_url, acct.member_key) as client:
        with pytest.raises(PaymentRequiredError) as refused:
            client.usage.charge("email", 5000)
        e = refused.value
        assert (e.status, e.required, e.required_ucr, e.remaining, e.remaining_ucr, e.reason) == (
            402, "5.000000", 5_000_000, "1.000000", 1_000_000, "insufficient_balance")
        assert e.upgrade_url and e.upgrade_url.startswith("http")
        assert client.credits.balance().balance_ucr == 1_000_000, "a 402 records nothing"
        assert client.gate("1") is True
        assert client.gate("1.000001") is False
        assert client.gate(min_ucr=1_000_000) is True


def test_iter_walks_every_page_without_gaps_or_repeats(live: Live, new_account: NewAccount) -> None:
    acct = new_account("100")
    with Client(live.base_url, acct.member_key) as client:
        results = client.usage.record([{"operation": "email", "quantity": i + 1} for i in range(250)])
        assert [r.status for r in results] == ["created"] * 250
        total = client.credits.balance().version
        entries = client.credits.iter(page_size=100)
        seen = [next(entries) for _ in range(100)]
        # Entries appended mid-iteration do not shift the pages: the walk ends where it began.
        client.usage.record([{"operation": "email", "quantity": 1} for _ in range(7)])
        seen += list(entries)
        versions = [e.version for e in seen]
        assert versions == list(range(total, 0, -1)), "every entry once, newest first"
        assert len({e.id for e in seen}) == total > 2 * 100


class DropFirstAnswer(httpx.BaseTransport):
    """Delivers the first charge to the server, then loses its answer (a timeout on the way back)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.keys: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path.endswith("/charges"):
            self.keys.append(request.headers.get("Idempotency-Key"))
            if len(self.keys) == 1:
                response.read()
                raise httpx.ReadError("connection lost after the server answered", request=request)
        return response


def test_a_retry_reuses_the_idempotency_key_and_charges_once(live: Live, new_account: NewAccount) -> None:
    acct = new_account("10")
    transport = DropFirstAnswer()
    with Client(live.base_url, acct.member_key, transport=transport) as client:
        charge = client.usage.charge("email", 2000)
        assert charge.replayed, "the second attempt replays the first, recorded one"
        assert len(transport.keys) == 2 and transport.keys[0] == transport.keys[1] is not None
        assert client.credits.balance().balance_ucr == 8_000_000, "charged once"
        with pytest.raises(IdempotencyConflictError):
            client.usage.charge("email", 3000, idempotency_key=transport.keys[0])


def test_errors_and_retries_give_up(live: Live, new_account: NewAccount) -> None:
    acct = new_account("1")
    with Client(live.base_url, acct.read_key) as client, pytest.raises(PermissionDeniedError):
        client.usage.charge("email", 1)
    with Client(live.base_url, live.operator_key) as operator:
        with pytest.raises(AccountRequiredError):
            operator.credits.balance()
        assert operator.for_account(acct.id).credits.balance().balance_ucr == 1_000_000
    with Client("http://127.0.0.1:9", acct.member_key, max_retries=1, timeout=0.5) as dead, \
            pytest.raises(LedgerConnectionError):
        dead.credits.balance()


async def test_async_client_main_paths(live: Live, new_account: NewAccount) -> None:
    acct = new_account("5")
    async with AsyncClient(live.base_url, acct.member_key) as client:
        assert (await client.credits.balance()).balance_ucr == 5_000_000
        await client.usage.charge("email", 1000)
        with pytest.raises(PaymentRequiredError):
            await client.usage.charge("email", 10_000)
        results = await client.usage.record("email", 500, idempotency_key="one")
        again = await client.usage.record("email", 500, idempotency_key="one")
        assert [r.status for r in results + again] == ["created", "replayed"]
        assert [e.version async for e in client.credits.iter(page_size=2)] == list(
            range((await client.credits.balance()).version, 0, -1))
        assert await client.gate("3.5") is True
        assert await client.gate("3.500001") is False
        dep = await client.deployments.start("d1", "cpu-s")
        assert (dep.status, dep.hours_charged) == ("running", 1)
        assert [d.id for d in await client.deployments.list()] == ["d1"]
        assert (await client.deployments.stop("d1")).status == "stopped"
