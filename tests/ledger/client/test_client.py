"""The SDK against a live server (uvicorn on a loopback port): balance, history and cursor
iteration, estimate, charges and 402s, metered usage, reservations, deployments, coupons, errors,
retries that reuse the idempotency key, the gate, and the async client on the same paths.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.client import (
    AccountRequiredError,
    AsyncClient,
    AsyncGate,
    AuthenticationError,
    Client,
    Gate,
    IdempotencyConflictError,
    InvalidRequestError,
    LedgerConnectionError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    gate,
)
from ledger.client.errors import error_from_problem
from tests.ledger.client.conftest import Live, NewAccount

# ---- transports that fail on purpose, over the real one ----------------------------------------

PROBLEM = {"content-type": "application/problem+json"}


class Script:
    """What to do with each request whose path ends with ``suffix``, in order; then forward.

    ``drop``: forward it (the server records it), then lose the answer (``ReadError``).
    ``connect``: fail before sending (``ConnectError``). ``503`` / ``500`` / ``429``: answer that
    without forwarding (a proxy or the server refusing before recording anything). ``fail-odd``
    (a usage batch): forward only the even items, answer the odd ones ``failed`` (what the server
    says of items an outage kept from being recorded while their neighbours were); ``fail-all``:
    forward nothing, answer every item ``failed``.
    """

    def __init__(self, suffix: str, steps: list[str], *, retry_after: str = "0") -> None:
        self.suffix = suffix
        self.steps = list(steps)
        self.retry_after = retry_after
        self.requests: list[httpx.Request] = []

    @property
    def keys(self) -> list[str | None]:
        return [r.headers.get("Idempotency-Key") for r in self.requests]

    @property
    def bodies(self) -> list[bytes]:
        return [r.content for r in self.requests]

    def step(self, request: httpx.Request) -> str:
        if not request.url.path.endswith(self.suffix):
            return "forward"
        self.requests.append(request)
        return self.steps.pop(0) if self.steps else "forward"

    def canned(self, step: str, request: httpx.Request) -> httpx.Response | None:
        if step == "connect":
            raise httpx.ConnectError("connection refused (scripted)", request=request)
        if step in {"500", "503"}:
            return httpx.Response(int(step), headers=PROBLEM, request=request, json={
                "type": "https://credit-ledger.dev/problems/outcome-unknown", "title": "Scripted failure",
                "status": int(step), "detail": "scripted"})
        if step == "fail-all":
            return httpx.Response(200, request=request, json={"results": [
                _failed(e) for e in json.loads(request.content)["events"]]})
        if step == "429":
            return httpx.Response(429, headers={**PROBLEM, "Retry-After": self.retry_after}, request=request, json={
                "type": "https://credit-ledger.dev/problems/rate-limited", "title": "Too many requests",
                "status": 429, "detail": "scripted", "limit_per_minute": 1, "retry_after_s": 7})
        return None


def _failed(event: dict[str, Any]) -> dict[str, Any]:
    return {"idempotency_key": event["idempotency_key"], "status": "failed",
            "error": {"type": "https://credit-ledger.dev/problems/unavailable", "title": "Service unavailable",
                      "status": 503, "detail": "scripted"}}


class Scripted(httpx.BaseTransport):
    def __init__(self, script: Script) -> None:
        self.script = script
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        step = self.script.step(request)
        canned = self.script.canned(step, request)
        if canned is not None:
            return canned
        if step == "fail-odd":
            return self.fail_odd(request)
        response = self.inner.handle_request(request)
        if step == "drop":
            response.read()  # the server has answered: the write is recorded
            response.close()
            raise httpx.ReadError("connection lost after the server answered (scripted)", request=request)
        return response

    def fail_odd(self, request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)["events"]
        even = httpx.Request("POST", request.url, headers={k: v for k, v in request.headers.items()
                                                           if k.lower() != "content-length"},
                             json={"events": events[::2]})
        recorded = iter(json.loads(self.inner.handle_request(even).read())["results"])
        results = [next(recorded) if i % 2 == 0 else _failed(e) for i, e in enumerate(events)]
        return httpx.Response(200, request=request, json={"results": results})

    def close(self) -> None:
        self.inner.close()


class AsyncScripted(httpx.AsyncBaseTransport):
    def __init__(self, script: Script) -> None:
        self.script = script
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        step = self.script.step(request)
        canned = self.script.canned(step, request)
        if canned is not None:
            return canned
        response = await self.inner.handle_async_request(request)
        if step == "drop":
            await response.aread()
            await response.aclose()
            raise httpx.ReadError("connection lost after the server answered (scripted)", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def no_floats(value: Any) -> bool:
    if isinstance(value, float):
        return False
    if isinstance(value, dict):
        return all(no_floats(v) for v in value.values())
    if isinstance(value, list):
        return all(no_floats(v) for v in value)
    return True


@pytest.fixture
def fast() -> dict[str, Any]:
    """Client options for retry tests: short backoff."""
    return {"backoff_s": 0.01, "max_backoff_s": 0.05}


# ---- reading ----------------------------------------------------------------------------------

def test_account_is_discovered_from_the_key(live: Live, new_account: NewAccount) -> None:
    acct = new_account("1")
    with Client(live.base_url, acct.member_key) as client:
        assert client.account_id is None, "discovered lazily"
        assert client.accounts.get().id == acct.id
        assert client.account_id == acct.id
        me = client.me()
        assert (me.role, me.account_id) == ("member", acct.id)
        assert client.accounts.get().plan == "team"


def test_balance_is_exact_integers_and_decimal_strings(live: Live, new_account: NewAccount) -> None:
    acct = new_account("12.5")
    with Client(live.base_url, acct.read_key) as client:
        b = client.credits.balance()
        assert (b.account_id, b.balance, b.balance_ucr) == (acct.id, "12.500000", 12_500_000)
        assert (b.available, b.available_ucr, b.reserved_ucr, b.debt_ucr) == ("12.500000", 12_500_000, 0, 0)
        assert b.by_source.purchase_ucr == 12_500_000
        assert isinstance(b.balance_ucr, int) and isinstance(b.balance, str)
        assert no_floats(b.model_dump()), "money is never a float"
        assert b.recent and b.recent[0].type


def test_history_pages_by_offset_and_cursor(live: Live, new_account: NewAccount) -> None:
    acct = new_account("10")
    with Client(live.base_url, acct.member_key) as client:
        client.usage.record([{"operation": "email", "quantity": i + 1} for i in range(5)])
        total = client.credits.balance().version
        first = client.credits.history(limit=2)
        assert [e.version for e in first.data] == [total, total - 1]
        assert first.has_more and first.next_cursor
        by_offset = client.credits.history(limit=2, offset=2)
        by_cursor = client.credits.history(limit=2, cursor=first.next_cursor)
        assert [e.id for e in by_offset.data] == [e.id for e in by_cursor.data]
        assert [e.version for e in by_cursor.data] == [total - 2, total - 3]
        newest = first.data[0]
        assert (newest.operation, newest.amount_ucr, newest.amount) == ("email", -5000, "-0.005000")
        with pytest.raises(ValueError):
            client.credits.history(limit=501)


def test_a_page_iterates_over_its_entries(live: Live, new_account: NewAccount,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``for entry in client.credits.history(limit=50)`` yields entries, not the model's fields."""
    acct = new_account("10")
    with Client(live.base_url, acct.member_key) as client:
        client.usage.record([{"operation": "email", "quantity": i + 1} for i in range(3)])
        for entry in client.credits.history(limit=50):
            print(entry.amount)
        page = client.credits.history(limit=50)
        assert list(page) == page.data and all(type(e).__name__ == "Entry" for e in page)
        assert len(page) == len(page.data) == client.credits.balance().version
        assert page[0] == page.data[0] and page[-1] == page.data[-1] and page[:2] == page.data[:2]
        assert page[0].amount == "-0.003000"
        assert not client.credits.history(limit=1, offset=len(page)), "an empty page is empty"
    printed = capsys.readouterr().out.split()
    assert printed == [e.amount for e in page.data]


def test_balance_speaks_pictographs_names(live: Live, new_account: NewAccount) -> None:
    acct = new_account("12.5")
    with Client(live.base_url, acct.member_key) as client:
        hold = client.reservations.create("email", 2000)
        b = client.credits.balance()
    assert (b.credits_remaining, b.credits_remaining_ucr) == (b.available, b.available_ucr) == ("10.500000", 10_500_000)
    assert (b.total_credits, b.total_credits_ucr) == (b.balance, b.balance_ucr) == ("12.500000", 12_500_000)
    assert (b.credits_monthly_allowance, b.credits_monthly_allowance_ucr) == (b.monthly_allowance,
                                                                               b.monthly_allowance_ucr)
    assert b.credits_monthly_allowance_ucr > 0, "a team plan has an allowance"
    assert b.credits_reset_at == b.resets_at is not None
    assert b.recent_history == b.recent and b.recent_history[0].type
    assert hold.held_ucr == 2_000_000 == b.reserved_ucr


def test_iter_walks_three_pages_without_gaps_or_repeats(live: Live, new_account: NewAccount) -> None:
    acct = new_account("100")
    with Client(live.base_url, acct.member_key) as client:
        keys = [f"iter-{i}" for i in range(250)]
        results = client.usage.record([{"operation": "email", "quantity": 1, "idempotency_key": k} for k in keys])
        assert [r.status for r in results] == ["created"] * 250
        assert [r.idempotency_key for r in results] == keys
        total = client.credits.balance().version
        entries = list(client.credits.iter(page_size=100))
        assert [e.version for e in entries] == list(range(total, 0, -1)), "every entry once, newest first"
        assert len(entries) > 2 * 100
        assert len({e.id for e in entries}) == len(entries)
        metered = [e.idempotency_key for e in entries if e.idempotency_key in set(keys)]
        assert sorted(metered) == sorted(keys)


def test_iter_is_stable_while_entries_are_appended(live: Live, new_account: NewAccount) -> None:
    acct = new_account("100")
    with Client(live.base_url, acct.member_key) as client:
        client.usage.record([{"operation": "email", "quantity": 1} for _ in range(250)])
        total = client.credits.balance().version
        entries: Iterator[Any] = client.credits.iter(page_size=100)
        seen = [next(entries) for _ in range(150)]  # one page and a half: the second page is fetched
        appended = client.usage.record([{"operation": "sms", "quantity": 1} for _ in range(7)])
        assert [r.status for r in appended] == ["created"] * 7
        seen += list(entries)
        assert [e.version for e in seen] == list(range(total, 0, -1)), "exactly what existed at the start"
        assert all(e.operation != "sms" for e in seen)
        again = [e.version for e in client.credits.iter(page_size=100)]
        assert again == list(range(total + 7, 0, -1))


def test_estimate_prices_without_recording(live: Live, new_account: NewAccount) -> None:
    acct = new_account("3")
    with Client(live.base_url, acct.read_key) as client:
        before = client.credits.balance().version
        est = client.credits.estimate("gpt-4o", quantities={"input_tokens": 1_000_000, "output_tokens": 100_000})
        assert (est.total, est.total_ucr, est.sufficient) == ("3.500000", 3_500_000, False)
        assert est.remaining_ucr == 3_000_000 and est.reason
        assert {line.dimension for line in est.lines} == {"input_tokens", "output_tokens"}
        cheap = client.credits.estimate("email", 1000)
        assert (cheap.total_ucr, cheap.sufficient) == (1_000_000, True)
        assert client.credits.balance().version == before, "an estimate records nothing"
        with pytest.raises(InvalidRequestError):
            client.credits.estimate("no-such-operation", 1)


# ---- charging -------------------------------------------------------------------------------

def test_charge_and_its_idempotent_replay(live: Live, new_account: NewAccount) -> None:
    acct = new_account("10")
    with Client(live.base_url, acct.member_key) as client:
        charge = client.usage.charge("email", 1000, attribution={"agent": "bot", "run": "r1"}, idempotency_key="c1")
        assert (charge.amount, charge.amount_ucr, charge.balance_after_ucr, charge.replayed) == (
            "1.000000", 1_000_000, 9_000_000, False)
        assert charge.grants and charge.grants[0].source == "purchase"
        again = client.usage.charge("email", 1000, attribution={"agent": "bot", "run": "r1"}, idempotency_key="c1")
        assert (again.id, again.replayed) == (charge.id, True)
        assert client.credits.balance().balance_ucr == 9_000_000, "charged once"
        entry = client.credits.history(limit=1).data[0]
        assert (entry.id, entry.amount_ucr, entry.attribution) == (charge.id, -1_000_000, {"agent": "bot", "run": "r1"})
        with pytest.raises(IdempotencyConflictError) as conflict:
            client.usage.charge("email", 2000, idempotency_key="c1")
        assert conflict.value.status == 409 and conflict.value.slug == "idempotency-conflict"


def test_payment_required_error_carries_the_fields(live: Live, new_account: NewAccount) -> None:
    acct = new_account("1")
    with Client(live.base_url, acct.member_key) as client:
        before = client.credits.balance()
        with pytest.raises(PaymentRequiredError) as refused:
            client.usage.charge("gpt-4o", quantities={"output_tokens": 1_000_000})
        e = refused.value
        assert (e.status, e.required, e.required_ucr, e.remaining, e.remaining_ucr, e.reason) == (
            402, "10.000000", 10_000_000, "1.000000", 1_000_000, "insufficient_balance")
        assert e.upgrade_url is not None and e.upgrade_url.startswith("https://")
        assert e.problem["required_ucr"] == 10_000_000 and e.slug == "payment-required"
        after = client.credits.balance()
        assert (after.balance_ucr, after.version) == (before.balance_ucr, before.version), "a 402 records nothing"


def test_quantities_and_amounts_are_never_floats(live: Live, new_account: NewAccount) -> None:
    acct = new_account("1")
    with Client(live.base_url, acct.member_key) as client:
        with pytest.raises(TypeError):
            client.usage.charge("email", 1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            client.usage.record("email", quantities={"messages": 2.0})  # type: ignore[dict-item]
        with pytest.raises(TypeError):
            client.gate(0.5)  # type: ignore[arg-type]
        assert client.credits.balance().balance_ucr == 1_000_000


# ---- metered usage ------------------------------------------------------------------------

def test_usage_record_one_and_many(live: Live, new_account: NewAccount) -> None:
    acct = new_account("10")
    with Client(live.base_url, acct.member_key) as client:
        one = client.usage.record("email", 100, idempotency_key="u1", attribution={"member": "ann"})
        assert (one.status, one.amount_ucr, one.ok) == ("created", 100_000, True)
        assert client.usage.record("email", 100, idempotency_key="u1", attribution={"member": "ann"}).status == (
            "replayed")
        with pytest.raises(InvalidRequestError):
            client.usage.record("no-such-operation", 1)
        results = client.usage.record([
            {"operation": "email", "quantity": 1},
            {"operation": "no-such-operation", "quantity": 1, "idempotency_key": "bad"},
            {"operation": "sms", "quantity": 2, "attribution": {"agent": "a1"}},
        ])
        assert [r.status for r in results] == ["created", "rejected", "created"]
        assert results[1].idempotency_key == "bad" and isinstance(results[1].exception, InvalidRequestError)
        assert results[0].exception is None and results[0].idempotency_key  # a key was made for it
        assert client.credits.balance().balance_ucr == 10_000_000 - 100_000 - 1000 - 15_000


def test_operator_records_usage_for_named_accounts(live: Live, new_account: NewAccount) -> None:
    a, b = new_account("1"), new_account("1")
    with Client(live.base_url, live.operator_key) as operator:
        results = operator.usage.record([{"account_id": a.id, "operation": "email", "quantity": 1},
                                         {"account_id": b.id, "operation": "email", "quantity": 2}])
        assert [r.status for r in results] == ["created", "created"]
        with pytest.raises(AccountRequiredError):
            operator.credits.balance()
        assert operator.for_account(a.id).credits.balance().balance_ucr == 999_000
        assert operator.for_account(b.id).credits.balance().balance_ucr == 998_000


# ---- reservations, deployments, coupons -------------------------------------------------------

def test_reservations_settle_and_release(live: Live, new_account: NewAccount) -> None:
    acct = new_account("10")
    with Client(live.base_url, acct.member_key) as client:
        held = client.reservations.create("training_h100_per_minute", 60)
        assert (held.held_ucr, held.held) == (3_990_000, "3.990000")
        assert client.credits.balance().available_ucr == 10_000_000 - 3_990_000
        settled = client.reservations.settle(held.id, 30)
        assert settled.charge.amount_ucr == 1_995_000
        assert settled.released_ucr == 3_990_000 - 1_995_000
        b = client.credits.balance()
        assert (b.balance_ucr, b.available_ucr, b.reserved_ucr) == (8_005_000, 8_005_000, 0)
        second = client.reservations.create("training_h100_per_minute", amount="2.5")
        assert second.held_ucr == 2_500_000
        released = client.reservations.release(second.id)
        assert released.released_ucr == 2_500_000
        assert client.credits.balance().available_ucr == 8_005_000
        with pytest.raises(PaymentRequiredError):
            client.reservations.create("training_h100_per_minute", amount_ucr=100_000_000)


def test_deployments_lifecycle(live: Live, new_account: NewAccount) -> None:
    acct = new_account("10")
    with Client(live.base_url, acct.member_key) as client:
        dep = client.deployments.start("dep-1", "cpu-s")
        assert (dep.id, dep.status, dep.hours_charged, dep.credits_ucr) == ("dep-1", "running", 1, 50_000)
        assert client.deployments.pause("dep-1", reason="nightly").status == "paused"
        resumed = client.deployments.resume("dep-1")
        assert resumed.status == "running" and resumed.hours_charged >= 1
        assert client.deployments.stop("dep-1").status == "stopped"
        assert [d.id for d in client.deployments.list()] == ["dep-1"]
        with pytest.raises(NotFoundError):
            client.deployments.stop("no-such-deployment")


def test_coupons_need_an_admin_key(live: Live, new_account: NewAccount) -> None:
    acct = new_account("1")
    with Client(live.base_url, acct.admin_key) as admin:
        grant = admin.coupons.redeem("WELCOME10")
        assert (grant.amount_ucr, grant.source, grant.balance_after_ucr) == (10_000_000, "promotion", 11_000_000)
        with pytest.raises(InvalidRequestError) as refused:
            admin.coupons.redeem("WELCOME10")
        assert refused.value.status == 422
    with Client(live.base_url, acct.member_key) as member, pytest.raises(PermissionDeniedError):
        member.coupons.redeem("LAUNCH50")


# ---- errors -------------------------------------------------------------------------------

def test_error_tree(live: Live, new_account: NewAccount) -> None:
    a, b = new_account("1"), new_account("1")
    with Client(live.base_url, "cl_test_aaaaaaaaaaaa_" + "a" * 32) as bad, pytest.raises(AuthenticationError) as e:
        bad.credits.balance()
    assert e.value.status == 401
    with Client(live.base_url, a.read_key) as reader, pytest.raises(PermissionDeniedError):
        reader.usage.charge("email", 1)
    with Client(live.base_url, a.member_key) as member:
        with pytest.raises(NotFoundError):
            member.for_account(b.id).credits.balance()  # another account: 404, never revealed
        with pytest.raises(NotFoundError):
            member.accounts.get(b.id)
    problem = {"type": "https://credit-ledger.dev/problems/command-failed", "title": "x", "status": 500,
               "detail": "y"}
    assert isinstance(error_from_problem(problem), ServerError)


# ---- retries ------------------------------------------------------------------------------

def test_a_lost_answer_is_retried_with_the_same_key_and_charges_once(
        live: Live, new_account: NewAccount, fast: dict[str, Any]) -> None:
    acct = new_account("10")
    script = Script("/charges", ["drop"])
    with Client(live.base_url, acct.member_key, transport=Scripted(script), **fast) as client:
        start = client.credits.balance().version
        charge = client.usage.charge("email", 2000)
        assert len(script.requests) == 2
        assert script.keys[0] is not None and script.keys[0] == script.keys[1], "the retry reused the key"
        assert script.bodies[0] == script.bodies[1]
        assert charge.replayed, "the second attempt replayed the recorded first"
        b = client.credits.balance()
        assert b.balance_ucr == 8_000_000, "charged exactly once"
        assert b.version == start + 1, "exactly one entry appended"
        newest = client.credits.history(limit=1).data[0]
        assert (newest.id, newest.idempotency_key) == (charge.id, script.keys[0])


def test_5xx_and_429_are_retried_with_the_same_key(
        live: Live, new_account: NewAccount, fast: dict[str, Any]) -> None:
    acct = new_account("10")
    script = Script("/charges", ["503", "429", "500", "connect"])
    with Client(live.base_url, acct.member_key, transport=Scripted(script), max_retries=3, retry_on_rate_limit=1,
                **fast) as client:
        charge = client.usage.charge("email", 1000, idempotency_key="given-key")
        assert script.keys == ["given-key"] * 5
        assert not charge.replayed, "only the last attempt reached the ledger"
        assert client.credits.balance().balance_ucr == 9_000_000


def test_usage_batches_are_retried_with_the_same_item_keys(
        live: Live, new_account: NewAccount, fast: dict[str, Any]) -> None:
    acct = new_account("10")
    script = Script("/v1/usage", ["drop"])
    with Client(live.base_url, acct.member_key, transport=Scripted(script), **fast) as client:
        results = client.usage.record([{"operation": "email", "quantity": 10} for _ in range(3)])
        assert script.bodies[0] == script.bodies[1], "the same items, with the same keys"
        assert [r.status for r in results] == ["replayed"] * 3
        assert client.credits.balance().balance_ucr == 10_000_000 - 3 * 10_000


def test_failed_usage_items_are_sent_again_with_their_keys_and_count_once(
        live: Live, new_account: NewAccount, fast: dict[str, Any]) -> None:
    acct = new_account("10")
    script = Script("/v1/usage", ["fail-odd", "fail-odd"])
    with Client(live.base_url, acct.member_key, transport=Scripted(script), max_retries=3, **fast) as client:
        results = client.usage.record([{"operation": "email", "quantity": 10, "idempotency_key": f"f{i}"}
                                       for i in range(5)])
        sent = [[e["idempotency_key"] for e in json.loads(b)["events"]] for b in script.bodies]
        # Only the failed items go again, with their own keys, until none is left.
        assert sent == [["f0", "f1", "f2", "f3", "f4"], ["f1", "f3"], ["f3"]]
        assert [(r.idempotency_key, r.status) for r in results] == [(f"f{i}", "created") for i in range(5)]
        assert client.credits.balance().balance_ucr == 10_000_000 - 5 * 10_000, "each item once"


def test_failed_usage_items_are_retried_a_bounded_number_of_times(
        live: Live, new_account: NewAccount, fast: dict[str, Any]) -> None:
    acct = new_account("10")
    script = Script("/v1/usage", ["fail-all"] * 10)
    with Client(live.base_url, acct.member_key, transport=Scripted(script), max_retries=2, **fast) as client:
        results = client.usage.record([{"operation": "email", "quantity": 10}, {"operation": "email", "quantity": 10}])
        assert len(script.requests) == 3
        assert [r.status for r in results] == ["failed", "failed"]
        assert not results[1].ok and isinstance(results[1].exception, ServerError)


def test_a_429_raises_at_once_by_default(live: Live, new_account: NewAccount, fast: dict[str, Any]) -> None:
    acct = new_account("1")
    script = Script("/balance", ["429"], retry_after="7")
    with Client(live.base_url, acct.read_key, transport=Scripted(script), **fast) as client, \
            pytest.raises(RateLimitedError) as limited:
        client.credits.balance()
    assert len(script.requests) == 1, "not retried: waiting is the caller's choice"
    assert limited.value.retry_after == limited.value.retry_after_s == 7 and limited.value.status == 429


def test_429_is_waited_out_only_when_asked_and_bounded(
        live: Live, new_account: NewAccount, fast: dict[str, Any]) -> None:
    acct = new_account("1")
    # Opted in: waits the server's Retry-After, then succeeds.
    script = Script("/balance", ["429"], retry_after="1")
    with Client(live.base_url, acct.read_key, transport=Scripted(script), retry_on_rate_limit=2, **fast) as client:
        started = time.monotonic()
        assert client.credits.balance().balance_ucr == 1_000_000
        assert time.monotonic() - started >= 1.0, "the Retry-After was waited out"
    assert len(script.requests) == 2
    # A Retry-After beyond max_retry_after_s is raised at once (a shorter wait would be refused).
    script = Script("/balance", ["429"], retry_after="3600")
    with Client(live.base_url, acct.read_key, transport=Scripted(script), retry_on_rate_limit=2,
                max_retry_after_s=30, **fast) as client, pytest.raises(RateLimitedError) as limited:
        client.credits.balance()
    assert len(script.requests) == 1 and limited.value.retry_after == 3600
    # At most N waits per call; the 429s do not use up the 5xx retries.
    script = Script("/balance", ["429", "503", "429", "429"])
    with Client(live.base_url, acct.read_key, transport=Scripted(script), retry_on_rate_limit=2, max_retries=1,
                **fast) as client, pytest.raises(RateLimitedError):
        client.credits.balance()
    assert len(script.requests) == 4
    with pytest.raises(ValueError):
        Client(live.base_url, acct.read_key, retry_on_rate_limit=-1)


def test_the_servers_own_429_becomes_rate_limited_error(live: Live, new_account: NewAccount) -> None:
    """A real over-the-plan 429 (a free plan: 60 requests a minute) raises at once, one request per call."""
    acct = new_account("1", plan="free")
    script = Script("/balance", [])
    calls = 0
    with Client(live.base_url, acct.read_key, transport=Scripted(script)) as client:
        with pytest.raises(RateLimitedError) as limited:
            for _ in range(200):
                calls += 1
                client.credits.balance()
        assert limited.value.status == 429
        assert limited.value.retry_after is not None and 1 <= limited.value.retry_after <= 60
    assert len(script.requests) == calls, "no call was retried"
    assert 1 < calls <= 61


async def test_async_client_raises_rate_limited_error_at_once(
        live: Live, new_account: NewAccount, fast: dict[str, Any]) -> None:
    acct = new_account("1")
    script = Script("/balance", ["429", "429"], retry_after="1")
    async with AsyncClient(live.base_url, acct.read_key, transport=AsyncScripted(script), **fast) as client:
        with pytest.raises(RateLimitedError) as limited:
            await client.credits.balance()
        assert limited.value.retry_after == 1 and len(script.requests) == 1
    async with AsyncClient(live.base_url, acct.read_key, transport=AsyncScripted(script), retry_on_rate_limit=1,
                           **fast) as client:
        assert (await client.credits.balance()).balance_ucr == 1_000_000
    assert len(script.requests) == 3


def test_4xx_are_not_retried(live: Live, new_account: NewAccount, fast: dict[str, Any]) -> None:
    acct = new_account("1")
    script = Script("/charges", [])
    with Client(live.base_url, acct.member_key, transport=Scripted(script), **fast) as client:
        with pytest.raises(InvalidRequestError):
            client.usage.charge("no-such-operation", 1)
        with pytest.raises(PaymentRequiredError):
            client.usage.charge("email", 5000)
        assert len(script.requests) == 2, "one attempt each"


def test_retries_are_bounded(live: Live, new_account: NewAccount, fast: dict[str, Any]) -> None:
    acct = new_account("1")
    script = Script("/charges", ["connect"] * 10)
    with Client(live.base_url, acct.member_key, transport=Scripted(script), max_retries=2, **fast) as client:
        with pytest.raises(LedgerConnectionError) as gave_up:
            client.usage.charge("email", 1)
        assert len(script.requests) == 3 and len(set(script.keys)) == 1
        assert script.keys[0] is not None and script.keys[0] in str(gave_up.value)
        assert client.credits.balance().balance_ucr == 1_000_000, "nothing reached the ledger"
    script = Script("/balance", ["503"] * 10)
    with Client(live.base_url, acct.read_key, transport=Scripted(script), max_retries=1, **fast) as client, \
            pytest.raises(ServerError):
        client.credits.balance()
    assert len(script.requests) == 2


# ---- the gate -----------------------------------------------------------------------------

def test_gate_true_and_false(live: Live, new_account: NewAccount) -> None:
    acct = new_account("5")
    with Client(live.base_url, acct.read_key) as client:
        assert client.gate("5") is True
        assert client.gate("5.000001") is False
        assert client.gate(5) is True and client.gate(6) is False
        assert client.gate(Decimal("4.999999")) is True
        assert client.gate(min_ucr=5_000_000) is True
        assert client.gate(min_ucr=5_000_001) is False
        with gate(client, "5") as ok:
            assert ok is True
        with gate(client, "50") as ok:
            assert ok is False
        g = gate(client, min_ucr=1)
        assert isinstance(g, Gate) and bool(g) and g.balance is not None and g.balance.available_ucr == 5_000_000
        with pytest.raises(ValueError):
            client.gate()
        with pytest.raises(ValueError):
            client.gate("5", min_ucr=5)
    with Client(live.base_url, acct.member_key) as member:
        member.reservations.create("training_h100_per_minute", amount="1")
        assert member.gate("5") is False, "the gate looks at the available balance (minus holds)"
        assert member.gate("4") is True


# ---- async --------------------------------------------------------------------------------

async def test_async_client_main_paths(live: Live, new_account: NewAccount, fast: dict[str, Any]) -> None:
    acct = new_account("100")
    async with AsyncClient(live.base_url, acct.member_key) as client:
        b = await client.credits.balance()
        assert (b.account_id, b.balance_ucr, b.available) == (acct.id, 100_000_000, "100.000000")
        assert client.account_id == acct.id
        results = await client.usage.record([{"operation": "email", "quantity": 1} for _ in range(250)])
        assert [r.status for r in results] == ["created"] * 250
        total = (await client.credits.balance()).version
        entries = client.credits.iter(page_size=100)
        seen = [await anext(entries) for _ in range(120)]
        await client.usage.record("sms", 1)  # appended mid-iteration
        seen += [e async for e in entries]
        assert [e.version for e in seen] == list(range(total, 0, -1))
        page = await client.credits.history(limit=3)
        assert page.data[0].operation == "sms" and page.has_more
        est = await client.credits.estimate("email", 1000)
        assert (est.total_ucr, est.sufficient) == (1_000_000, True)
        one = await client.usage.record("email", 10, idempotency_key="a1")
        assert one.status == "created"
        assert (await client.usage.record("email", 10, idempotency_key="a1")).status == "replayed"
        with pytest.raises(PaymentRequiredError) as refused:
            await client.usage.charge("gpt-4o", quantities={"output_tokens": 100_000_000})
        assert (refused.value.required_ucr, refused.value.reason) == (1_000_000_000, "insufficient_balance")
        assert refused.value.remaining_ucr == (await client.credits.balance()).available_ucr
        assert await client.gate("1") is True
        assert await client.gate("1000") is False
        g = gate(client, "1")
        assert isinstance(g, AsyncGate) and await g is True
        async with gate(client, min_ucr=10**12) as ok:
            assert ok is False
        dep = await client.deployments.start("d1", "cpu-s")
        assert (dep.status, dep.hours_charged) == ("running", 1)
        assert [d.id for d in await client.deployments.list()] == ["d1"]
        assert (await client.deployments.stop("d1")).status == "stopped"
        held = await client.reservations.create("training_h100_per_minute", 10)
        assert (await client.reservations.release(held.id)).released_ucr == held.held_ucr
        assert (await client.accounts.get()).id == acct.id


async def test_async_retry_reuses_the_key_and_charges_once(
        live: Live, new_account: NewAccount, fast: dict[str, Any]) -> None:
    acct = new_account("10")
    script = Script("/charges", ["drop", "503"])
    async with AsyncClient(live.base_url, acct.member_key, transport=AsyncScripted(script), **fast) as client:
        charge = await client.usage.charge("email", 3000)
        assert len(script.requests) == 3 and len(set(script.keys)) == 1 and script.keys[0] is not None
        assert charge.replayed
        assert (await client.credits.balance()).balance_ucr == 7_000_000, "charged exactly once"
    script = Script("/charges", ["connect"] * 5)
    async with AsyncClient(live.base_url, acct.member_key, transport=AsyncScripted(script), max_retries=1,
                           **fast) as client:
        with pytest.raises(LedgerConnectionError):
            await client.usage.charge("email", 1)
        assert len(script.requests) == 2


async def test_async_operator_needs_an_account(live: Live, new_account: NewAccount) -> None:
    acct = new_account("2")
    async with AsyncClient(live.base_url, live.operator_key) as operator:
        with pytest.raises(AccountRequiredError):
            await operator.credits.balance()
        scoped = operator.for_account(acct.id)
        assert (await scoped.credits.balance()).balance_ucr == 2_000_000
        assert await scoped.gate("2") is True


def test_the_readme_snippet_runs_as_written(live: Live, new_account: NewAccount,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The README's SDK example, run verbatim against a live server (only the URL and key differ)."""
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### The Python SDK"):]
    start = section.index("```python\n") + len("```python\n")
    snippet = section[start:section.index("```", start)]
    assert 'Client("http://localhost:8000", api_key="cl_live_...")' in snippet
    acct = new_account("0.004")  # enough for a balance read, too little for the charge
    code = snippet.replace("http://localhost:8000", live.base_url).replace("cl_live_...", acct.member_key)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "0.004000"
    reason, required, upgrade_url = printed[1].split(" ")
    assert reason == "insufficient_balance" and Decimal(required) > Decimal("0.004")
    assert upgrade_url.startswith("http")
