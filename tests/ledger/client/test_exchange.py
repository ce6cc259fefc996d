"""The flows both clients drive, stepped by hand (no server): what they ask to send, when they
sleep, what they give up on. The live tests in ``test_client.py`` hold the same rules end to end."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from ledger.client import LedgerConnectionError, ServerError
from ledger.client.calls import charge
from ledger.client.exchange import Done, Send, Sleep, advance
from ledger.client.models import Charge
from ledger.client.sync_client import Client

CHARGED = {"id": "00000000-0000-0000-0000-000000000001", "operation": "email", "quantities": {"messages": 1},
           "amount": "0.001000", "amount_ucr": 1000, "balance_after": "0.999000", "balance_after_ucr": 999_000,
           "rate_card_version": "v1", "grants": [], "debt_added": "0.000000", "debt_added_ucr": 0,
           "created_at": "2026-01-01T00:00:00Z"}


def answer(status: int, request: httpx.Request) -> httpx.Response:
    if status == 200:
        return httpx.Response(200, json=CHARGED, request=request)
    return httpx.Response(status, request=request, headers={"content-type": "application/problem+json"}, json={
        "type": "https://credit-ledger.dev/problems/outcome-unknown", "title": "x", "status": status, "detail": "y"})


@pytest.fixture
def client() -> Iterator[Client]:
    with Client("http://ledger.invalid", "cl_test_key", account_id="a", max_retries=2, backoff_s=0.01) as client:
        yield client


def test_a_5xx_is_slept_on_then_the_same_request_is_sent_again(client: Client) -> None:
    flow = client._exchange(charge("email", 1, None, None, "k1"))
    first = advance(flow, None)
    assert isinstance(first, Send) and first.request.headers["Idempotency-Key"] == "k1"
    assert isinstance(advance(flow, answer(503, first.request)), Sleep)
    again = advance(flow, None)
    assert isinstance(again, Send) and again.request is first.request, "the very request, key and bytes"
    done = advance(flow, answer(200, again.request))
    assert isinstance(done, Done) and isinstance(done.value, Charge) and done.value.amount_ucr == 1000


def test_retries_stop_after_max_retries(client: Client) -> None:
    flow = client._exchange(charge("email", 1, None, None, "k2"))
    step = advance(flow, None)
    for _ in range(2):  # max_retries
        assert isinstance(step, Send)
        assert isinstance(advance(flow, httpx.ConnectError("refused", request=step.request)), Sleep)
        step = advance(flow, None)
    assert isinstance(step, Send)
    with pytest.raises(LedgerConnectionError, match="3 attempt"):
        advance(flow, httpx.ConnectError("refused", request=step.request))
    flow = client._exchange(charge("email", 1, None, None, "k3"))
    step = advance(flow, None)
    for _ in range(2):
        assert isinstance(step, Send) and isinstance(advance(flow, answer(500, step.request)), Sleep)
        step = advance(flow, None)
    assert isinstance(step, Send)
    with pytest.raises(ServerError):
        advance(flow, answer(500, step.request))


def test_a_transport_error_not_worth_retrying_gives_up_at_once(client: Client) -> None:
    flow = client._exchange(charge("email", 1, None, None, "k4"))
    step = advance(flow, None)
    assert isinstance(step, Send)
    with pytest.raises(LedgerConnectionError, match="1 attempt"):
        advance(flow, httpx.UnsupportedProtocol("no", request=step.request))
