"""What the sync and async clients share: each API call as a plain ``Call``, and the retry policy.

A call is built once (path, body, the model of its answer, and for a write an idempotency key
made once), then a transport sends it and, when it must, sends the very same request again: a
retried write carries the same key, so the server replays it instead of charging twice.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from ledger.client import models as m
from ledger.client.errors import LedgerAPIError, RateLimitedError, ServerError, error_from_response

M = TypeVar("M", bound=BaseModel)

#: Statuses worth another attempt: over the rate (after Retry-After), and server-side failures.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: The longest a retry waits (a Retry-After beyond it is capped).
MAX_WAIT_S = 30.0  # float-ok: a duration


@dataclass(frozen=True)
class Call(Generic[M]):
    """One API request and the model its answer parses into."""

    method: str
    path: str
    model: type[M]
    json: Any = None
    params: Mapping[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def request(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        return client.build_request(self.method, self.path, json=self.json, params=self.params,
                                    headers=self.headers)


def write(method: str, path: str, model: type[M], body: Any = None, idempotency_key: str | None = None) -> Call[M]:
    """A write: its idempotency key is made here, once, and reused by every retry."""
    return Call(method, path, model, json=body,
                headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())})


def read(path: str, model: type[M], params: Mapping[str, Any] | None = None) -> Call[M]:
    return Call("GET", path, model, params={k: v for k, v in (params or {}).items() if v is not None})


def account_path(account_id: str, tail: str = "") -> str:
    return f"/v1/accounts/{quote(account_id, safe='')}{tail}"


def body(**fields: Any) -> dict[str, Any]:
    """A request body without the fields left out (``None``)."""
    return {k: v for k, v in fields.items() if v is not None}


def parse(call: Call[M], response: httpx.Response) -> M:
    """The answer as ``call.model``, or the error it is (problem+json -> the exception tree)."""
    if response.status_code >= 400:
        raise error_from_response(response)
    data = response.json() if response.content else {}
    if "replayed" in call.model.model_fields:
        data = {**data, "replayed": response.headers.get("Idempotent-Replayed") == "true"}
    return call.model.model_validate(data)


def should_retry(attempt: int, max_retries: int, outcome: httpx.Response | Exception) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or ``None`` to stop and report."""
    if attempt >= max_retries:
        return None
    if isinstance(outcome, httpx.Response):
        if outcome.status_code not in RETRY_STATUSES:
            return None
        err = error_from_response(outcome)
        if isinstance(err, RateLimitedError) and err.retry_after_s is not None:
            return min(float(err.retry_after_s), MAX_WAIT_S)
    elif not isinstance(outcome, httpx.TransportError):
        return None
    # Exponential backoff with full jitter: 0.25 s, 0.5 s, 1 s, ... capped.
    return random.uniform(0, min(0.25 * 2**attempt, 8.0))


def final_error(outcome: httpx.Response | Exception) -> Exception:
    if isinstance(outcome, httpx.Response):
        return error_from_response(outcome)
    from ledger.client.errors import LedgerConnectionError

    return LedgerConnectionError(f"no answer from the ledger API: {type(outcome).__name__}: {outcome}")


class UsageResults(m._Model):
    results: list[m.UsageResult]


class DeploymentList(m._Model):
    data: list[m.Deployment]


def usage_items(account_id: str, events: Sequence[m.UsageEvent] | str, quantity: int | None,
                 quantities: Mapping[str, int] | None, attribution: m.Attribution | None,
                 idempotency_key: str | None) -> list[dict[str, Any]]:
    """The batch's items, each with an account and a key made once for this call (reused on retry)."""
    if isinstance(events, str):
        events = [m.UsageEvent(operation=events, **body(  # type: ignore[typeddict-item]
            quantity=quantity, quantities=dict(quantities) if quantities else None, attribution=attribution,
            idempotency_key=idempotency_key))]
    items = []
    for e in events:
        item: dict[str, Any] = {"account_id": account_id, **e}
        item.setdefault("idempotency_key", str(uuid.uuid4()))
        if "occurred_at" in item and not isinstance(item["occurred_at"], str):
            item["occurred_at"] = item["occurred_at"].isoformat()
        items.append(item)
    return items


__all__ = [
    "Call",
    "DeploymentList",
    "LedgerAPIError",
    "ServerError",
    "UsageResults",
    "account_path",
    "body",
    "parse",
    "read",
    "should_retry",
    "usage_items",
    "write",
]
