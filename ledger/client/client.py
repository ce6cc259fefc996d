"""``Client`` and ``AsyncClient``: one request-building / response-parsing core, two thin transports.

Every endpoint is described once, as a ``_Call`` (method, path, query, body, idempotency key and
the parser of its answer) built by the functions in ``_api``. The sync and async clients only
*run* calls: resolve the account, send with retries, raise or parse. Their namespaces
(``credits``, ``usage``, ...) are one-line adapters from a method's arguments to a ``_Call``.

Retries: connection errors, 500, 502, 503 and 504 are retried up to ``max_retries`` times with
exponential backoff and jitter, and so are the items of a usage batch that came back ``failed``
(not recorded for a transient reason). A 429 raises ``RateLimitedError`` (with ``retry_after``) at
once: waiting is the caller's choice, made with ``retry_on_rate_limit=N`` (wait out ``Retry-After`` and
retry, at most N times, each wait at most ``max_retry_after_s``). A write's idempotency key is
made once per method call (a UUID4 unless the caller gives one) and every retry sends the same
request bytes with the same key, so a retry never records anything twice.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, overload
from urllib.parse import quote
from uuid import UUID

import httpx
from pydantic import BaseModel

from ledger.client.errors import (
    AccountRequiredError,
    LedgerConnectionError,
    error_from_response,
    retry_after_seconds,
)
from ledger.client.models import (
    Account,
    Attribution,
    Balance,
    Charge,
    Deployment,
    Entry,
    EntryPage,
    Estimate,
    Grant,
    Me,
    Release,
    Reservation,
    Settlement,
    UsageEvent,
    UsageResult,
    to_ucr,
)

__all__ = ["AsyncClient", "Client"]

log = logging.getLogger("ledger.client")

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

USER_AGENT = "credit-ledger-python/0.1"
#: Statuses worth another attempt: the outcome is unknown (5xx). A 429 only with ``retry_on_rate_limit``.
RETRY_STATUSES = frozenset({500, 502, 503, 504})
#: Transport failures worth another attempt; others (a bad URL, a proxy refusal) are not.
RETRY_ERRORS: tuple[type[Exception], ...] = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
#: Most items ``POST /v1/usage`` takes at once; longer lists are sent in chunks.
USAGE_BATCH_MAX = 1000
MAX_PAGE = 500

Quantities = Mapping[str, int]


# ---- the core: calls, built once for both transports -----------------------------------------

@dataclass(frozen=True)
class _Call(Generic[T]):
    """One request to make and how to read its answer."""

    method: str
    #: May hold ``{account}``: filled with the client's account when the call runs.
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, str | int] | None = None
    json: Any = None
    #: A body that needs the client's account (a usage batch's default ``account_id``).
    json_for: Callable[[str], Any] | None = None
    idempotency_key: str | None = None
    needs_account: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "needs_account", "{account}" in self.path or self.json_for is not None)


def _model(cls: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        return cls.model_validate(response.json())
    return parse


def _written(cls: type[M]) -> Callable[[httpx.Response], M]:
    """Parse a write's answer, noting an idempotent replay."""
    def parse(response: httpx.Response) -> M:
        replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
        return cls.model_validate({**response.json(), "replayed": replayed})
    return parse


def _deployments(response: httpx.Response) -> list[Deployment]:
    return [Deployment.model_validate(d) for d in response.json()["data"]]


def _usage_results(response: httpx.Response) -> list[UsageResult]:
    return [UsageResult.model_validate(r) for r in response.json()["results"]]


def _new_key(given: str | None) -> str:
    if given is None:
        return str(uuid.uuid4())
    if not isinstance(given, str) or not given.strip():
        raise ValueError("idempotency_key must be a non-blank string")
    return given


def _int(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{name} must be an int, not {type(value).__name__} (never a float)")  # float-ok: refused


def _usage_body(operation: str, quantity: int | None, quantities: Quantities | None,
                attribution: Attribution | Mapping[str, str] | None) -> dict[str, Any]:
    return {"operation": operation, **_quantities_body(quantity, quantities, attribution)}


def _quantities_body(quantity: int | None, quantities: Quantities | None,
                     attribution: Attribution | Mapping[str, str] | None) -> dict[str, Any]:
    _int("quantity", quantity)
    body: dict[str, Any] = {}
    if quantity is not None:
        body["quantity"] = quantity
    if quantities is not None:
        for dim, q in quantities.items():
            _int(f"quantities[{dim!r}]", q)
        body["quantities"] = dict(quantities)
    if attribution is not None:
        body["attribution"] = dict(attribution)
    return body


def _seg(value: str | UUID) -> str:
    return quote(str(value), safe="")


def _account_path(account_id: str | None, rest: str = "") -> str:
    return (f"/v1/accounts/{_seg(account_id)}" if account_id is not None else "/v1/accounts/{account}") + rest


class _api:
    """Every endpoint the SDK speaks, once."""

    @staticmethod
    def me() -> _Call[Me]:
        return _Call("GET", "/v1/me", _model(Me))

    @staticmethod
    def account(account_id: str | None = None) -> _Call[Account]:
        return _Call("GET", _account_path(account_id), _model(Account))

    @staticmethod
    def balance() -> _Call[Balance]:
        return _Call("GET", _account_path(None, "/balance"), _model(Balance))

    @staticmethod
    def ledger(limit: int = 50, offset: int = 0, cursor: str | None = None) -> _Call[EntryPage]:
        _int("limit", limit)
        _int("offset", offset)
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1..{MAX_PAGE}")
        if offset < 0:
            raise ValueError("offset must be >= 0")
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        if cursor is not None:
            params["cursor"] = cursor
        return _Call("GET", _account_path(None, "/ledger"), _model(EntryPage), params=params)

    @staticmethod
    def next_page(page: EntryPage, page_size: int) -> _Call[EntryPage] | None:
        """The call for the page after ``page`` in a stable (cursor) iteration, or ``None`` at the end."""
        if not page.has_more or page.next_cursor is None:
            return None
        return _api.ledger(limit=page_size, cursor=page.next_cursor)

    @staticmethod
    def estimate(operation: str, quantity: int | None, quantities: Quantities | None,
                 attribution: Attribution | Mapping[str, str] | None) -> _Call[Estimate]:
        return _Call("POST", _account_path(None, "/estimate"), _model(Estimate),
                     json=_usage_body(operation, quantity, quantities, attribution))

    @staticmethod
    def charge(operation: str, quantity: int | None, quantities: Quantities | None,
               attribution: Attribution | Mapping[str, str] | None, idempotency_key: str | None) -> _Call[Charge]:
        return _Call("POST", _account_path(None, "/charges"), _written(Charge),
                     json=_usage_body(operation, quantity, quantities, attribution),
                     idempotency_key=_new_key(idempotency_key))

    @staticmethod
    def usage(events: Sequence[UsageEvent | Mapping[str, Any]]) -> list[_Call[list[UsageResult]]]:
        """``POST /v1/usage`` calls for ``events``, 1,000 at a time; keys made now, once."""
        if isinstance(events, str | bytes) or not isinstance(events, Sequence):
            raise TypeError("events must be a sequence of usage events (mappings)")
        if not events:
            raise ValueError("events must not be empty")
        items: list[dict[str, Any]] = []
        for raw in events:
            if not isinstance(raw, Mapping):
                raise TypeError(f"each usage event must be a mapping, not {type(raw).__name__}")
            item = dict(raw)
            _int("quantity", item.get("quantity"))
            for dim, q in (item.get("quantities") or {}).items():
                _int(f"quantities[{dim!r}]", q)
            if isinstance(item.get("occurred_at"), datetime):
                item["occurred_at"] = item["occurred_at"].isoformat()
            item["idempotency_key"] = _new_key(item.get("idempotency_key"))
            items.append(item)
        calls: list[_Call[list[UsageResult]]] = []
        for start in range(0, len(items), USAGE_BATCH_MAX):
            chunk = items[start:start + USAGE_BATCH_MAX]
            if all("account_id" in item for item in chunk):
                calls.append(_Call("POST", "/v1/usage", _usage_results, json={"events": chunk}))
            else:
                def body(account: str, chunk: list[dict[str, Any]] = chunk) -> Any:
                    return {"events": [{"account_id": account, **item} for item in chunk]}
                calls.append(_Call("POST", "/v1/usage", _usage_results, json_for=body))
        return calls

    @staticmethod
    def usage_again(call: _Call[list[UsageResult]], where: list[int]) -> _Call[list[UsageResult]]:
        """``call`` (a usage batch) with only its items at ``where``: the same bodies and keys."""
        if call.json_for is not None:
            whole = call.json_for

            def body(account: str) -> Any:
                events = whole(account)["events"]
                return {"events": [events[i] for i in where]}
            return _Call("POST", "/v1/usage", _usage_results, json_for=body)
        return _Call("POST", "/v1/usage", _usage_results, json={"events": [call.json["events"][i] for i in where]})

    @staticmethod
    def usage_one(operation: str, quantity: int | None, quantities: Quantities | None,
                  attribution: Attribution | Mapping[str, str] | None, occurred_at: datetime | str | None,
                  idempotency_key: str | None, account_id: str | None) -> _Call[list[UsageResult]]:
        event: dict[str, Any] = _usage_body(operation, quantity, quantities, attribution)
        if occurred_at is not None:
            event["occurred_at"] = occurred_at
        if idempotency_key is not None:
            event["idempotency_key"] = idempotency_key
        if account_id is not None:
            event["account_id"] = account_id
        return _api.usage([event])[0]

    @staticmethod
    def reserve(operation: str, quantity: int | None, quantities: Quantities | None,
                amount: str | None, amount_ucr: int | None, ttl_s: int | None,
                attribution: Attribution | Mapping[str, str] | None,
                idempotency_key: str | None) -> _Call[Reservation]:
        body = _usage_body(operation, quantity, quantities, attribution)
        if amount is not None:
            to_ucr(amount)  # float-ok: refuse a float or a malformed amount here, not at the server
            body["amount"] = amount
        if amount_ucr is not None:
            body["amount_ucr"] = to_ucr(ucr=amount_ucr)
        if ttl_s is not None:
            _int("ttl_s", ttl_s)
            body["ttl_s"] = ttl_s
        return _Call("POST", _account_path(None, "/reservations"), _written(Reservation), json=body,
                     idempotency_key=_new_key(idempotency_key))

    @staticmethod
    def settle(reservation_id: str | UUID, quantity: int | None, quantities: Quantities | None,
               attribution: Attribution | Mapping[str, str] | None,
               idempotency_key: str | None) -> _Call[Settlement]:
        body = _quantities_body(quantity, quantities, attribution)
        return _Call("POST", _account_path(None, f"/reservations/{_seg(reservation_id)}/settle"),
                     _written(Settlement), json=body, idempotency_key=_new_key(idempotency_key))

    @staticmethod
    def release(reservation_id: str | UUID, idempotency_key: str | None) -> _Call[Release]:
        return _Call("POST", _account_path(None, f"/reservations/{_seg(reservation_id)}/release"),
                     _written(Release), idempotency_key=_new_key(idempotency_key))

    @staticmethod
    def start_deployment(deployment_id: str, instance_type: str, idempotency_key: str | None) -> _Call[Deployment]:
        return _Call("POST", _account_path(None, "/deployments"), _written(Deployment),
                     json={"deployment_id": deployment_id, "instance_type": instance_type},
                     idempotency_key=_new_key(idempotency_key))

    @staticmethod
    def deployment_action(deployment_id: str, action: str, idempotency_key: str | None,
                          reason: str | None = None) -> _Call[Deployment]:
        return _Call("POST", _account_path(None, f"/deployments/{_seg(deployment_id)}/{action}"),
                     _written(Deployment), json={"reason": reason} if reason is not None else None,
                     idempotency_key=_new_key(idempotency_key))

    @staticmethod
    def deployments() -> _Call[list[Deployment]]:
        return _Call("GET", _account_path(None, "/deployments"), _deployments)

    @staticmethod
    def redeem(code: str, idempotency_key: str | None) -> _Call[Grant]:
        return _Call("POST", _account_path(None, "/coupons"), _written(Grant), json={"code": code},
                     idempotency_key=_new_key(idempotency_key))


class _Base:
    """State and decisions shared by both transports: no I/O here."""

    _account_id: str | None
    _owns_http: bool

    def _configure(self, base_url: str, api_key: str, account_id: str | None, timeout: float,  # float-ok: seconds
                   max_retries: int, backoff_s: float, max_backoff_s: float,  # float-ok: seconds
                   max_retry_after_s: float, retry_on_rate_limit: int) -> None:  # float-ok: seconds
        if not api_key:
            raise ValueError("api_key is required")
        for name, value in (("max_retries", max_retries), ("retry_on_rate_limit", retry_on_rate_limit)):
            _int(name, value)
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

    def _namespaces(self) -> None:
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

    def _http_options(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "timeout": httpx.Timeout(self.timeout),
                "headers": {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json",
                            "User-Agent": USER_AGENT}}

    def _request(self, http: httpx.Client | httpx.AsyncClient, call: _Call[Any], account: str | None) -> httpx.Request:
        """The request for ``call``, built once: every retry sends these very bytes and key."""
        path = call.path.replace("{account}", _seg(account)) if account is not None else call.path
        body = call.json_for(account) if call.json_for is not None and account is not None else call.json
        headers = {"Idempotency-Key": call.idempotency_key} if call.idempotency_key is not None else None
        return http.build_request(call.method, path, params=call.params, json=body, headers=headers)

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

    def _usage_again(self, call: _Call[list[UsageResult]], results: list[UsageResult],
                     attempt: int) -> tuple[_Call[list[UsageResult]], list[int], float] | None:  # float-ok: s
        """The next try of a usage batch's ``failed`` items (the call, where they are, the wait),
        or ``None``: none failed, or ``max_retries`` are spent (they stay ``failed``)."""
        where = [i for i, r in enumerate(results) if r.status == "failed"]
        delay = self._retry_delay(attempt, None) if where else None
        if delay is None:
            return None
        log.info("%d usage item(s) failed; retry %d in %.2fs", len(where), attempt + 1, delay)
        return _api.usage_again(call, where), where, delay

    @staticmethod
    def _result(call: _Call[T], response: httpx.Response) -> T:
        if response.is_success:
            return call.parse(response)
        raise error_from_response(response)

    @staticmethod
    def _gave_up(call: _Call[Any], attempts: int, exc: Exception) -> LedgerConnectionError:
        key = f" (idempotency key {call.idempotency_key})" if call.idempotency_key else ""
        return LedgerConnectionError(f"{call.method} {call.path}: no answer after {attempts} attempt(s){key}: {exc!r}")

    def _me_account(self, me: Me) -> str:
        if me.account_id is None:
            raise AccountRequiredError(
                "an operator key acts on every account: pass account_id= or use client.for_account(id)")
        self._account_id = me.account_id
        return me.account_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, account_id={self._account_id!r})"


# ---- the sync transport ----------------------------------------------------------------------

class Client(_Base):
    """The ledger's HTTP API, synchronously.

    >>> with Client("https://ledger.example.com", "cl_live_...") as client:  # doctest: +SKIP
    ...     client.credits.balance().available
    '12.500000'

    ``account_id`` defaults to the key's own account (asked once, lazily, with ``GET /v1/me``);
    an operator key must name one, here or with ``client.for_account(id)``.

    ``max_retries`` bounds the retries after a connection error or a 5xx. A 429 raises
    ``RateLimitedError`` at once (``retry_after``: seconds to wait) unless
    ``retry_on_rate_limit=N``: then the client waits the server's ``Retry-After`` and tries
    again, at most N times per call, and raises at once when the server asks for more than
    ``max_retry_after_s`` (so one call waits at most N × ``max_retry_after_s``).
    """

    def __init__(self, base_url: str, api_key: str, *, account_id: str | None = None,
                 timeout: float = 10.0, max_retries: int = 3,  # float-ok: seconds
                 transport: httpx.BaseTransport | None = None, backoff_s: float = 0.5,  # float-ok: seconds
                 max_backoff_s: float = 8.0, max_retry_after_s: float = 30.0,  # float-ok: seconds
                 retry_on_rate_limit: int = 0) -> None:
        self._configure(base_url, api_key, account_id, timeout, max_retries, backoff_s, max_backoff_s,
                        max_retry_after_s, retry_on_rate_limit)
        self._http = httpx.Client(transport=transport, **self._http_options())
        self._owns_http = True
        self._namespaces()

    def _namespaces(self) -> None:
        self.credits = Credits(self)
        self.usage = Usage(self)
        self.reservations = Reservations(self)
        self.deployments = Deployments(self)
        self.coupons = Coupons(self)
        self.accounts = Accounts(self)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def me(self) -> Me:
        """Who this key is: its id, role and account (``None`` for an operator key)."""
        return self._run(_api.me())

    def _account(self) -> str:
        return self._account_id if self._account_id is not None else self._me_account(self.me())

    def gate(self, min_credits: str | Decimal | int | None = None, *, min_ucr: int | None = None) -> bool:
        """Whether the available balance is at least ``min_credits`` (or ``min_ucr`` µcr).

        >>> if client.gate("5"):  # doctest: +SKIP
        ...     run_paid_phase()
        """
        threshold = to_ucr(min_credits, ucr=min_ucr)
        return self.credits.balance().available_ucr >= threshold

    def _run(self, call: _Call[T]) -> T:
        request = self._request(self._http, call, self._account() if call.needs_account else None)
        attempt = limited = 0  # retries after a failure; 429s waited out
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.send(request)
                response.read()
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
                    return self._result(call, response)
                log.log(logging.WARNING if response.status_code == 429 else logging.INFO,
                        "%s %s answered %d; retry in %.2fs", call.method, request.url.path,
                        response.status_code, delay)
                response.close()
            time.sleep(delay)
            if response is not None and response.status_code == 429:
                limited += 1
            else:
                attempt += 1


class _Namespace:
    def __init__(self, client: Client) -> None:
        self._c = client


class Credits(_Namespace):
    def balance(self) -> Balance:
        """The exact balance: ``balance``, ``available``, ``reserved``, ``debt``, by source, ..."""
        return self._c._run(_api.balance())

    def history(self, limit: int = 50, offset: int = 0, *, cursor: str | None = None) -> EntryPage:
        """One page of ledger entries, newest first."""
        return self._c._run(_api.ledger(limit, offset, cursor))

    def iter(self, page_size: int = 100) -> Iterator[Entry]:
        """Every entry, newest first, exactly those that existed at the first page (cursor-stable)."""
        first = _api.ledger(limit=page_size)

        def entries() -> Iterator[Entry]:
            call: _Call[EntryPage] | None = first
            while call is not None:
                page = self._c._run(call)
                yield from page.data
                call = _api.next_page(page, page_size)
        return entries()

    def estimate(self, operation: str, quantity: int | None = None, quantities: Quantities | None = None, *,
                 attribution: Attribution | Mapping[str, str] | None = None) -> Estimate:
        """What ``operation`` would cost and whether the account could pay it now (never raises 402)."""
        return self._c._run(_api.estimate(operation, quantity, quantities, attribution))


class Usage(_Namespace):
    def charge(self, operation: str, quantity: int | None = None, quantities: Quantities | None = None, *,
               attribution: Attribution | Mapping[str, str] | None = None,
               idempotency_key: str | None = None) -> Charge:
        """A gated charge; raises ``PaymentRequiredError`` when the account may not spend that much."""
        return self._c._run(_api.charge(operation, quantity, quantities, attribution, idempotency_key))

    @overload
    def record(self, events: Sequence[UsageEvent | Mapping[str, Any]], /) -> list[UsageResult]: ...

    @overload
    def record(self, operation: str, /, quantity: int | None = None, *, quantities: Quantities | None = None,
               attribution: Attribution | Mapping[str, str] | None = None, occurred_at: datetime | str | None = None,
               idempotency_key: str | None = None, account_id: str | None = None) -> UsageResult: ...

    def record(self, events: str | Sequence[UsageEvent | Mapping[str, Any]], /, quantity: int | None = None, *,
               quantities: Quantities | None = None, attribution: Attribution | Mapping[str, str] | None = None,
               occurred_at: datetime | str | None = None, idempotency_key: str | None = None,
               account_id: str | None = None) -> list[UsageResult] | UsageResult:
        """Metered usage (never 402), ``POST /v1/usage``.

        With a list of events: one result per event, in order (a rejected item never fails the
        others). Items that ``failed`` (not recorded for a transient reason) are sent again with
        the same keys, with backoff, up to ``max_retries`` times; a 503 is retried the same way.
        With one operation: its result, raising the item's error if it was rejected or failed.
        """
        if isinstance(events, str):
            results = self._batch(_api.usage_one(events, quantity, quantities, attribution, occurred_at,
                                                 idempotency_key, account_id))
            return results[0].raise_for_error()
        out: list[UsageResult] = []
        for call in _api.usage(events):
            out.extend(self._batch(call))
        return out

    def _batch(self, call: _Call[list[UsageResult]]) -> list[UsageResult]:
        """One batch; its ``failed`` items sent again (same keys) with backoff, ``max_retries`` times."""
        results = self._c._run(call)
        attempt = 0
        while (again := self._c._usage_again(call, results, attempt)) is not None:
            retry, where, delay = again
            time.sleep(delay)
            again_results: list[UsageResult] = self._c._run(retry)
            for i, r in zip(where, again_results, strict=True):
                results[i] = r
            attempt += 1
        return results


class Reservations(_Namespace):
    def create(self, operation: str, quantity: int | None = None, quantities: Quantities | None = None, *,
               amount: str | None = None, amount_ucr: int | None = None, ttl_s: int | None = None,
               attribution: Attribution | Mapping[str, str] | None = None,
               idempotency_key: str | None = None) -> Reservation:
        """Hold credits for a long run (gated: may raise ``PaymentRequiredError``)."""
        return self._c._run(_api.reserve(operation, quantity, quantities, amount, amount_ucr, ttl_s, attribution,
                                         idempotency_key))

    def settle(self, reservation_id: str | UUID, quantity: int | None = None,
               quantities: Quantities | None = None, *, attribution: Attribution | Mapping[str, str] | None = None,
               idempotency_key: str | None = None) -> Settlement:
        """Charge what was used against the hold; the rest is released."""
        return self._c._run(_api.settle(reservation_id, quantity, quantities, attribution, idempotency_key))

    def release(self, reservation_id: str | UUID, *, idempotency_key: str | None = None) -> Release:
        """Release the whole hold."""
        return self._c._run(_api.release(reservation_id, idempotency_key))


class Deployments(_Namespace):
    def start(self, deployment_id: str, instance_type: str, *, idempotency_key: str | None = None) -> Deployment:
        """Start a deployment (gated): its first hour is charged now."""
        return self._c._run(_api.start_deployment(deployment_id, instance_type, idempotency_key))

    def stop(self, deployment_id: str, *, idempotency_key: str | None = None) -> Deployment:
        return self._c._run(_api.deployment_action(deployment_id, "stop", idempotency_key))

    def pause(self, deployment_id: str, *, reason: str | None = None,
              idempotency_key: str | None = None) -> Deployment:
        return self._c._run(_api.deployment_action(deployment_id, "pause", idempotency_key, reason))

    def resume(self, deployment_id: str, *, idempotency_key: str | None = None) -> Deployment:
        """Resume: free while paid time is left; once it is used up, the next hour is charged now (gated)."""
        return self._c._run(_api.deployment_action(deployment_id, "resume", idempotency_key))

    def list(self) -> builtins.list[Deployment]:
        return self._c._run(_api.deployments())


class Coupons(_Namespace):
    def redeem(self, code: str, *, idempotency_key: str | None = None) -> Grant:
        """Redeem a coupon code (admin key); a refused code raises ``InvalidRequestError``."""
        return self._c._run(_api.redeem(code, idempotency_key))


class Accounts(_Namespace):
    def get(self, account_id: str | None = None) -> Account:
        """The account (this client's unless ``account_id`` is given)."""
        return self._c._run(_api.account(account_id))


# ---- the async transport ---------------------------------------------------------------------

class AsyncClient(_Base):
    """The ledger's HTTP API, for ``asyncio``: the same namespaces as ``Client``, awaitable.

    >>> async with AsyncClient("https://ledger.example.com", "cl_live_...") as client:  # doctest: +SKIP
    ...     async for entry in client.credits.iter():
    ...         print(entry.amount)
    """

    def __init__(self, base_url: str, api_key: str, *, account_id: str | None = None,
                 timeout: float = 10.0, max_retries: int = 3,  # float-ok: seconds
                 transport: httpx.AsyncBaseTransport | None = None, backoff_s: float = 0.5,  # float-ok: seconds
                 max_backoff_s: float = 8.0, max_retry_after_s: float = 30.0,  # float-ok: seconds
                 retry_on_rate_limit: int = 0) -> None:
        self._configure(base_url, api_key, account_id, timeout, max_retries, backoff_s, max_backoff_s,
                        max_retry_after_s, retry_on_rate_limit)
        self._http = httpx.AsyncClient(transport=transport, **self._http_options())
        self._owns_http = True
        self._namespaces()

    def _namespaces(self) -> None:
        self.credits = AsyncCredits(self)
        self.usage = AsyncUsage(self)
        self.reservations = AsyncReservations(self)
        self.deployments = AsyncDeployments(self)
        self.coupons = AsyncCoupons(self)
        self.accounts = AsyncAccounts(self)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def me(self) -> Me:
        return await self._run(_api.me())

    async def _account(self) -> str:
        return self._account_id if self._account_id is not None else self._me_account(await self.me())

    async def gate(self, min_credits: str | Decimal | int | None = None, *, min_ucr: int | None = None) -> bool:
        """Whether the available balance is at least ``min_credits`` (or ``min_ucr`` µcr).

        >>> if await client.gate("5"):  # doctest: +SKIP
        ...     await run_paid_phase()
        """
        threshold = to_ucr(min_credits, ucr=min_ucr)
        return (await self.credits.balance()).available_ucr >= threshold

    async def _run(self, call: _Call[T]) -> T:
        request = self._request(self._http, call, await self._account() if call.needs_account else None)
        attempt = limited = 0  # retries after a failure; 429s waited out
        while True:
            response: httpx.Response | None = None
            try:
                response = await self._http.send(request)
                await response.aread()
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
                    return self._result(call, response)
                log.log(logging.WARNING if response.status_code == 429 else logging.INFO,
                        "%s %s answered %d; retry in %.2fs", call.method, request.url.path,
                        response.status_code, delay)
                await response.aclose()
            await asyncio.sleep(delay)
            if response is not None and response.status_code == 429:
                limited += 1
            else:
                attempt += 1


class _AsyncNamespace:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client


class AsyncCredits(_AsyncNamespace):
    async def balance(self) -> Balance:
        return await self._c._run(_api.balance())

    async def history(self, limit: int = 50, offset: int = 0, *, cursor: str | None = None) -> EntryPage:
        return await self._c._run(_api.ledger(limit, offset, cursor))

    def iter(self, page_size: int = 100) -> AsyncIterator[Entry]:
        """Every entry, newest first, exactly those that existed at the first page (cursor-stable)."""
        first = _api.ledger(limit=page_size)

        async def entries() -> AsyncIterator[Entry]:
            call: _Call[EntryPage] | None = first
            while call is not None:
                page = await self._c._run(call)
                for entry in page.data:
                    yield entry
                call = _api.next_page(page, page_size)
        return entries()

    async def estimate(self, operation: str, quantity: int | None = None, quantities: Quantities | None = None, *,
                       attribution: Attribution | Mapping[str, str] | None = None) -> Estimate:
        return await self._c._run(_api.estimate(operation, quantity, quantities, attribution))


class AsyncUsage(_AsyncNamespace):
    async def charge(self, operation: str, quantity: int | None = None, quantities: Quantities | None = None, *,
                     attribution: Attribution | Mapping[str, str] | None = None,
                     idempotency_key: str | None = None) -> Charge:
        return await self._c._run(_api.charge(operation, quantity, quantities, attribution, idempotency_key))

    @overload
    async def record(self, events: Sequence[UsageEvent | Mapping[str, Any]], /) -> list[UsageResult]: ...

    @overload
    async def record(self, operation: str, /, quantity: int | None = None, *,
                     quantities: Quantities | None = None,
                     attribution: Attribution | Mapping[str, str] | None = None,
                     occurred_at: datetime | str | None = None, idempotency_key: str | None = None,
                     account_id: str | None = None) -> UsageResult: ...

    async def record(self, events: str | Sequence[UsageEvent | Mapping[str, Any]], /, quantity: int | None = None,
                     *, quantities: Quantities | None = None,
                     attribution: Attribution | Mapping[str, str] | None = None,
                     occurred_at: datetime | str | None = None, idempotency_key: str | None = None,
                     account_id: str | None = None) -> list[UsageResult] | UsageResult:
        if isinstance(events, str):
            results = await self._batch(_api.usage_one(events, quantity, quantities, attribution, occurred_at,
                                                       idempotency_key, account_id))
            return results[0].raise_for_error()
        out: list[UsageResult] = []
        for call in _api.usage(events):
            out.extend(await self._batch(call))
        return out

    async def _batch(self, call: _Call[list[UsageResult]]) -> list[UsageResult]:
        """One batch; its ``failed`` items sent again (same keys) with backoff, ``max_retries`` times."""
        results = await self._c._run(call)
        attempt = 0
        while (again := self._c._usage_again(call, results, attempt)) is not None:
            retry, where, delay = again
            await asyncio.sleep(delay)
            again_results: list[UsageResult] = await self._c._run(retry)
            for i, r in zip(where, again_results, strict=True):
                results[i] = r
            attempt += 1
        return results


class AsyncReservations(_AsyncNamespace):
    async def create(self, operation: str, quantity: int | None = None, quantities: Quantities | None = None, *,
                     amount: str | None = None, amount_ucr: int | None = None, ttl_s: int | None = None,
                     attribution: Attribution | Mapping[str, str] | None = None,
                     idempotency_key: str | None = None) -> Reservation:
        return await self._c._run(_api.reserve(operation, quantity, quantities, amount, amount_ucr, ttl_s,
                                               attribution, idempotency_key))

    async def settle(self, reservation_id: str | UUID, quantity: int | None = None,
                     quantities: Quantities | None = None, *,
                     attribution: Attribution | Mapping[str, str] | None = None,
                     idempotency_key: str | None = None) -> Settlement:
        return await self._c._run(_api.settle(reservation_id, quantity, quantities, attribution, idempotency_key))

    async def release(self, reservation_id: str | UUID, *, idempotency_key: str | None = None) -> Release:
        return await self._c._run(_api.release(reservation_id, idempotency_key))


class AsyncDeployments(_AsyncNamespace):
    async def start(self, deployment_id: str, instance_type: str, *,
                    idempotency_key: str | None = None) -> Deployment:
        return await self._c._run(_api.start_deployment(deployment_id, instance_type, idempotency_key))

    async def stop(self, deployment_id: str, *, idempotency_key: str | None = None) -> Deployment:
        return await self._c._run(_api.deployment_action(deployment_id, "stop", idempotency_key))

    async def pause(self, deployment_id: str, *, reason: str | None = None,
                    idempotency_key: str | None = None) -> Deployment:
        return await self._c._run(_api.deployment_action(deployment_id, "pause", idempotency_key, reason))

    async def resume(self, deployment_id: str, *, idempotency_key: str | None = None) -> Deployment:
        return await self._c._run(_api.deployment_action(deployment_id, "resume", idempotency_key))

    async def list(self) -> builtins.list[Deployment]:
        return await self._c._run(_api.deployments())


class AsyncCoupons(_AsyncNamespace):
    async def redeem(self, code: str, *, idempotency_key: str | None = None) -> Grant:
        return await self._c._run(_api.redeem(code, idempotency_key))


class AsyncAccounts(_AsyncNamespace):
    async def get(self, account_id: str | None = None) -> Account:
        return await self._c._run(_api.account(account_id))
