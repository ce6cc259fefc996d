"""Every endpoint the SDK speaks, once, as a ``Call``: the request to make and how to read its answer.

A ``Call`` holds the method, path, query, body and idempotency key of one request and the parser
of its answer; the functions below build one per endpoint from a method's arguments, checking
them on the way (quantities and µcr amounts as exact ints; a non-blank key). Nothing here does I/O: the transports
in ``sync_client`` and ``async_client`` send what ``Call.request`` builds, through the retry
policy in ``exchange``.

A write's idempotency key is made here, once per method call (a UUID4 unless the caller gives
one), so every retry of the built request carries the same key and the same bytes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote
from uuid import UUID

import httpx
from pydantic import BaseModel

from ledger.client.errors import error_from_response
from ledger.client.models import (
    Account,
    Attribution,
    Balance,
    Charge,
    Deployment,
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

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: Most items ``POST /v1/usage`` takes at once; longer lists are sent in chunks.
USAGE_BATCH_MAX = 1000
MAX_PAGE = 500

Quantities = Mapping[str, int]
Attributes = Attribution | Mapping[str, str]


@dataclass(frozen=True)
class Call(Generic[T]):
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

    def request(self, http: httpx.Client | httpx.AsyncClient, account: str | None) -> httpx.Request:
        """The request, built once: every retry sends these very bytes and key."""
        path = self.path.replace("{account}", _seg(account)) if account is not None else self.path
        body = self.json_for(account) if self.json_for is not None and account is not None else self.json
        headers = {"Idempotency-Key": self.idempotency_key} if self.idempotency_key is not None else None
        return http.build_request(self.method, path, params=self.params, json=body, headers=headers)

    def result(self, response: httpx.Response) -> T:
        """The parsed answer, or the ``LedgerAPIError`` for a refusal."""
        if response.is_success:
            return self.parse(response)
        raise error_from_response(response)


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


def check_int(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{name} must be an int, not {type(value).__name__} (never a float)")  # float-ok: refused


def _usage_body(operation: str, quantity: int | None, quantities: Quantities | None,
                attribution: Attributes | None) -> dict[str, Any]:
    return {"operation": operation, **_quantities_body(quantity, quantities, attribution)}


def _quantities_body(quantity: int | None, quantities: Quantities | None,
                     attribution: Attributes | None) -> dict[str, Any]:
    check_int("quantity", quantity)
    body: dict[str, Any] = {}
    if quantity is not None:
        body["quantity"] = quantity
    if quantities is not None:
        for dim, q in quantities.items():
            check_int(f"quantities[{dim!r}]", q)
        body["quantities"] = dict(quantities)
    if attribution is not None:
        body["attribution"] = dict(attribution)
    return body


def _seg(value: str | UUID) -> str:
    return quote(str(value), safe="")


def _account_path(account_id: str | None, rest: str = "") -> str:
    return (f"/v1/accounts/{_seg(account_id)}" if account_id is not None else "/v1/accounts/{account}") + rest


# ---- every endpoint the SDK speaks, once ---------------------------------------------------

def me() -> Call[Me]:
    return Call("GET", "/v1/me", _model(Me))

def account(account_id: str | None = None) -> Call[Account]:
    return Call("GET", _account_path(account_id), _model(Account))

def balance() -> Call[Balance]:
    return Call("GET", _account_path(None, "/balance"), _model(Balance))

def ledger(limit: int = 50, offset: int = 0, cursor: str | None = None) -> Call[EntryPage]:
    check_int("limit", limit)
    check_int("offset", offset)
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be 1..{MAX_PAGE}")
    if offset < 0:
        raise ValueError("offset must be >= 0")
    params: dict[str, str | int] = {"limit": limit, "offset": offset}
    if cursor is not None:
        params["cursor"] = cursor
    return Call("GET", _account_path(None, "/ledger"), _model(EntryPage), params=params)

def next_page(page: EntryPage, page_size: int) -> Call[EntryPage] | None:
    """The call for the page after ``page`` in a stable (cursor) iteration, or ``None`` at the end."""
    if not page.has_more or page.next_cursor is None:
        return None
    return ledger(limit=page_size, cursor=page.next_cursor)

def estimate(operation: str, quantity: int | None, quantities: Quantities | None,
             attribution: Attributes | None) -> Call[Estimate]:
    return Call("POST", _account_path(None, "/estimate"), _model(Estimate),
                 json=_usage_body(operation, quantity, quantities, attribution))

def charge(operation: str, quantity: int | None, quantities: Quantities | None,
           attribution: Attributes | None, idempotency_key: str | None) -> Call[Charge]:
    return Call("POST", _account_path(None, "/charges"), _written(Charge),
                 json=_usage_body(operation, quantity, quantities, attribution),
                 idempotency_key=_new_key(idempotency_key))

def usage(events: Sequence[UsageEvent | Mapping[str, Any]]) -> list[Call[list[UsageResult]]]:
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
        check_int("quantity", item.get("quantity"))
        for dim, q in (item.get("quantities") or {}).items():
            check_int(f"quantities[{dim!r}]", q)
        if isinstance(item.get("occurred_at"), datetime):
            item["occurred_at"] = item["occurred_at"].isoformat()
        item["idempotency_key"] = _new_key(item.get("idempotency_key"))
        items.append(item)
    calls: list[Call[list[UsageResult]]] = []
    for start in range(0, len(items), USAGE_BATCH_MAX):
        chunk = items[start:start + USAGE_BATCH_MAX]
        if all("account_id" in item for item in chunk):
            calls.append(Call("POST", "/v1/usage", _usage_results, json={"events": chunk}))
        else:
            def body(account: str, chunk: list[dict[str, Any]] = chunk) -> Any:
                return {"events": [{"account_id": account, **item} for item in chunk]}
            calls.append(Call("POST", "/v1/usage", _usage_results, json_for=body))
    return calls

def usage_again(call: Call[list[UsageResult]], where: list[int]) -> Call[list[UsageResult]]:
    """``call`` (a usage batch) with only its items at ``where``: the same bodies and keys."""
    if call.json_for is not None:
        whole = call.json_for

        def body(account: str) -> Any:
            events = whole(account)["events"]
            return {"events": [events[i] for i in where]}
        return Call("POST", "/v1/usage", _usage_results, json_for=body)
    return Call("POST", "/v1/usage", _usage_results, json={"events": [call.json["events"][i] for i in where]})

def usage_one(operation: str, quantity: int | None, quantities: Quantities | None,
              attribution: Attributes | None, occurred_at: datetime | str | None,
              idempotency_key: str | None, account_id: str | None) -> Call[list[UsageResult]]:
    event: dict[str, Any] = _usage_body(operation, quantity, quantities, attribution)
    if occurred_at is not None:
        event["occurred_at"] = occurred_at
    if idempotency_key is not None:
        event["idempotency_key"] = idempotency_key
    if account_id is not None:
        event["account_id"] = account_id
    return usage([event])[0]

def reserve(operation: str, quantity: int | None, quantities: Quantities | None,
            amount: str | None, amount_ucr: int | None, ttl_s: int | None,
            attribution: Attributes | None,
            idempotency_key: str | None) -> Call[Reservation]:
    body = _usage_body(operation, quantity, quantities, attribution)
    if amount is not None:
        to_ucr(amount)  # float-ok: refuse a float or a malformed amount here, not at the server
        body["amount"] = amount
    if amount_ucr is not None:
        body["amount_ucr"] = to_ucr(ucr=amount_ucr)
    if ttl_s is not None:
        check_int("ttl_s", ttl_s)
        body["ttl_s"] = ttl_s
    return Call("POST", _account_path(None, "/reservations"), _written(Reservation), json=body,
                 idempotency_key=_new_key(idempotency_key))

def settle(reservation_id: str | UUID, quantity: int | None, quantities: Quantities | None,
           attribution: Attributes | None,
           idempotency_key: str | None) -> Call[Settlement]:
    body = _quantities_body(quantity, quantities, attribution)
    return Call("POST", _account_path(None, f"/reservations/{_seg(reservation_id)}/settle"),
                 _written(Settlement), json=body, idempotency_key=_new_key(idempotency_key))

def release(reservation_id: str | UUID, idempotency_key: str | None) -> Call[Release]:
    return Call("POST", _account_path(None, f"/reservations/{_seg(reservation_id)}/release"),
                 _written(Release), idempotency_key=_new_key(idempotency_key))

def start_deployment(deployment_id: str, instance_type: str, idempotency_key: str | None) -> Call[Deployment]:
    return Call("POST", _account_path(None, "/deployments"), _written(Deployment),
                 json={"deployment_id": deployment_id, "instance_type": instance_type},
                 idempotency_key=_new_key(idempotency_key))

def deployment_action(deployment_id: str, action: str, idempotency_key: str | None,
                      reason: str | None = None) -> Call[Deployment]:
    return Call("POST", _account_path(None, f"/deployments/{_seg(deployment_id)}/{action}"),
                 _written(Deployment), json={"reason": reason} if reason is not None else None,
                 idempotency_key=_new_key(idempotency_key))

def deployments() -> Call[list[Deployment]]:
    return Call("GET", _account_path(None, "/deployments"), _deployments)

def redeem(code: str, idempotency_key: str | None) -> Call[Grant]:
    return Call("POST", _account_path(None, "/coupons"), _written(Grant), json={"code": code},
                 idempotency_key=_new_key(idempotency_key))

