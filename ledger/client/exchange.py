"""What both clients share: their settings, the retry policy, and each exchange as a flow, no I/O.

An exchange (one call with its retries, the account lookup it may need, a usage batch whose
``failed`` items go again, a gate) is written once, here, as a generator that yields what it
needs done, ``Send(request)`` or ``Sleep(seconds)``, and receives the answer. ``Client`` drives
flows with ``httpx.Client`` and ``time.sleep``, ``AsyncClient`` with ``httpx.AsyncClient`` and
``asyncio.sleep``; a transport error is thrown into the flow where it waited for the answer.

Retries: connection errors, 500, 502, 503 and 504 are retried up to ``max_retries`` times with
exponential backoff and jitter, and so are the items of a usage batch that came back ``failed``
(not recorded for a transient reason). A 429 raises ``RateLimitedError`` (with ``retry_after``) at
once: waiting is the caller's choice, made with ``retry_on_rate_limit=N`` (wait out ``Retry-After``
and retry, at most N times, each wait at most ``max_retry_after_s``). Every retry sends the very
request first built, with its idempotency key, so a retry never records anything twice.

The loop is ours, not httpx's: ``HTTPTransport(retries=...)`` only reconnects after a failed
connect, without a backoff we choose, and not through a transport the caller passes in; it never
retries a lost answer, a 5xx or a usage item.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, Self, TypeAlias, TypeVar, cast

import httpx

from ledger.client import calls
from ledger.client.calls import Attributes, Call, Quantities, check_int
from ledger.client.errors import AccountRequiredError, LedgerConnectionError, retry_after_seconds
from ledger.client.models import Me, UsageEvent, UsageResult, to_ucr

log = logging.getLogger("ledger.client")

T = TypeVar("T")
#: ``httpx.BaseTransport`` for ``Client``, ``httpx.AsyncBaseTransport`` for ``AsyncClient``.
TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)

USER_AGENT = "credit-ledger-python/0.1"
#: Statuses worth another attempt: the outcome is unknown (5xx). A 429 only with ``retry_on_rate_limit``.
RETRY_STATUSES = frozenset({500, 502, 503, 504})
#: Transport failures worth another attempt; others (a bad URL, a proxy refusal) are not.
RETRY_ERRORS: tuple[type[Exception], ...] = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class Send:
    """Send ``request``; the transport answers with its response or throws its ``TransportError``."""

    request: httpx.Request


@dataclass(frozen=True)
class Sleep:
    seconds: float  # float-ok: a duration


@dataclass(frozen=True)
class Done(Generic[T]):
    """The flow has ended with ``value``."""

    value: T


#: An exchange: yields what to do, receives a response after a ``Send``, returns its result.
Flow: TypeAlias = Generator[Send | Sleep, httpx.Response | None, T]
#: What a transport got for a ``Send`` (or ``None`` after a ``Sleep``).
Outcome: TypeAlias = httpx.Response | httpx.TransportError | None


def advance(flow: Flow[T], outcome: Outcome) -> Send | Sleep | Done[T]:
    """Give ``flow`` the outcome of its last step (a transport error is thrown in); its next step."""
    try:
        return flow.throw(outcome) if isinstance(outcome, Exception) else flow.send(outcome)
    except StopIteration as done:
        return Done(cast(T, done.value))


def _send(request: httpx.Request) -> Flow[httpx.Response]:
    response = yield Send(request)
    assert response is not None, "a transport answers a Send with a response"
    return response


class ClientCore(Generic[TransportT]):
    """Settings and flows shared by ``Client`` and ``AsyncClient``; their transports do the I/O."""

    _http: httpx.Client | httpx.AsyncClient
    _account_id: str | None
    _owns_http: bool

    def __init__(self, base_url: str, api_key: str, *, account_id: str | None = None,
                 timeout: float = 10.0, max_retries: int = 3,  # float-ok: seconds
                 transport: TransportT | None = None, backoff_s: float = 0.5,  # float-ok: seconds
                 max_backoff_s: float = 8.0, max_retry_after_s: float = 30.0,  # float-ok: seconds
                 retry_on_rate_limit: int = 0) -> None:
        if not api_key:
            raise ValueError("api_key is required")
        for name, value in (("max_retries", max_retries), ("retry_on_rate_limit", retry_on_rate_limit)):
            check_int(name, value)
            if value < 0:
                raise ValueError(f"{name} must be >= 0")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._account_id = account_id
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_retry_after_s = max_retry_after_s
        self.retry_on_rate_limit = retry_on_rate_limit
        self._http = self._open(transport, base_url=self.base_url, timeout=httpx.Timeout(self.timeout), headers={
            "Authorization": f"Bearer {self._api_key}", "Accept": "application/json", "User-Agent": USER_AGENT})
        self._owns_http = True
        self._namespaces()

    def _open(self, transport: TransportT | None, **options: Any) -> httpx.Client | httpx.AsyncClient:
        """The transport's httpx client with these options."""
        raise NotImplementedError

    def _namespaces(self) -> None:
        """Attach ``credits``, ``usage``, ... bound to this client."""
        raise NotImplementedError

    def for_account(self, account_id: str) -> Self:
        """This client acting on ``account_id`` (shares the connection pool; closing it is a no-op)."""
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other._account_id = account_id
        other._owns_http = False
        other._namespaces()
        return other

    @property
    def account_id(self) -> str | None:
        """The account this client acts on (``None`` until discovered with ``GET /v1/me``)."""
        return self._account_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, account_id={self._account_id!r})"

    # ---- the retry policy ----------------------------------------------------------------------

    def _retry_delay(self, attempt: int, response: httpx.Response | None,  # float-ok: seconds
                     limited: int = 0) -> float | None:  # float-ok: seconds
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to stop.

        ``response`` is ``None`` after a retryable transport error; ``limited`` counts the 429s
        already waited out for this call.
        """
        if response is not None and response.status_code == 429:
            return self._rate_limit_delay(response, limited)
        if attempt >= self.max_retries:
            return None
        if response is not None and response.status_code not in RETRY_STATUSES:
            return None
        ceiling = min(self.max_backoff_s, self.backoff_s * (1 << attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # float-ok: jitter on a duration

    def _rate_limit_delay(self, response: httpx.Response, limited: int) -> float | None:  # float-ok: seconds
        """How long to wait out a 429, or ``None`` to raise it: not opted in, retries spent, or the
        server asks for longer than ``max_retry_after_s`` (a shorter wait would only be refused)."""
        if limited >= self.retry_on_rate_limit:
            return None
        after = retry_after_seconds(response.headers.get("Retry-After"))
        wait = float(after if after is not None else 1)  # float-ok: seconds
        if wait > self.max_retry_after_s:
            return None
        return wait + random.uniform(0, 0.1)  # float-ok: jitter on a duration

    # ---- the flows -----------------------------------------------------------------------------

    def _exchange(self, call: Call[T]) -> Flow[T]:
        """``call`` (with its account, asked once if unknown), retried as the policy allows."""
        account = (yield from self._account()) if call.needs_account else None
        request = call.request(self._http, account)
        attempt = limited = 0  # retries after a failure; 429s waited out
        while True:
            response: httpx.Response | None = None
            try:
                response = yield from _send(request)
            except RETRY_ERRORS as exc:
                delay = self._retry_delay(attempt, None)
                if delay is None:
                    raise self._gave_up(call, attempt + 1, exc) from exc
                log.info("%s %s failed (%r); retry %d in %.2fs", call.method, request.url.path, exc, attempt + 1,
                         delay)
            except httpx.TransportError as exc:
                raise self._gave_up(call, attempt + 1, exc) from exc
            else:
                delay = self._retry_delay(attempt, response, limited)
                if delay is None:
                    return call.result(response)
                log.log(logging.WARNING if response.status_code == 429 else logging.INFO,
                        "%s %s answered %d; retry in %.2fs", call.method, request.url.path,
                        response.status_code, delay)
            yield Sleep(delay)
            if response is not None and response.status_code == 429:
                limited += 1
            else:
                attempt += 1

    @staticmethod
    def _gave_up(call: Call[Any], attempts: int, exc: Exception) -> LedgerConnectionError:
        key = f" (idempotency key {call.idempotency_key})" if call.idempotency_key else ""
        return LedgerConnectionError(f"{call.method} {call.path}: no answer after {attempts} attempt(s){key}: {exc!r}")

    def _account(self) -> Flow[str]:
        """The account this client acts on: the key's own, asked once with ``GET /v1/me``."""
        if self._account_id is not None:
            return self._account_id
        me: Me = yield from self._exchange(calls.me())
        if me.account_id is None:
            raise AccountRequiredError(
                "an operator key acts on every account: pass account_id= or use client.for_account(id)")
        self._account_id = me.account_id
        return me.account_id

    def _gate(self, min_credits: str | Decimal | int | None, min_ucr: int | None) -> Flow[bool]:
        threshold = to_ucr(min_credits, ucr=min_ucr)
        balance = yield from self._exchange(calls.balance())
        return balance.available_ucr >= threshold

    def _record(self, events: str | Sequence[UsageEvent | Mapping[str, Any]], quantity: int | None,
                quantities: Quantities | None, attribution: Attributes | None, occurred_at: datetime | str | None,
                idempotency_key: str | None, account_id: str | None) -> Flow[list[UsageResult] | UsageResult]:
        """``usage.record``: one operation's result (raising its error), or one result per event."""
        if isinstance(events, str):
            call = calls.usage_one(events, quantity, quantities, attribution, occurred_at, idempotency_key,
                                   account_id)
            results = yield from self._usage_batch(call)
            return results[0].raise_for_error()
        out: list[UsageResult] = []
        for call in calls.usage(events):
            out.extend((yield from self._usage_batch(call)))
        return out

    def _usage_batch(self, call: Call[list[UsageResult]]) -> Flow[list[UsageResult]]:
        """One batch; its ``failed`` items sent again (same keys) with backoff, ``max_retries`` times."""
        results = yield from self._exchange(call)
        attempt = 0
        while where := [i for i, r in enumerate(results) if r.status == "failed"]:
            delay = self._retry_delay(attempt, None)
            if delay is None:
                break  # retries spent: they stay ``failed``
            log.info("%d usage item(s) failed; retry %d in %.2fs", len(where), attempt + 1, delay)
            yield Sleep(delay)
            again = yield from self._exchange(calls.usage_again(call, where))
            for i, r in zip(where, again, strict=True):
                results[i] = r
            attempt += 1
        return results
