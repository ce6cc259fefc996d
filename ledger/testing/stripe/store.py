"""The stand-in's memory: objects by id, events, idempotent responses, all behind one lock.

Every API request and control runs whole under ``lock`` (an RLock), so concurrent requests see
each other's effects in some serial order, as they would against Stripe.
"""

from __future__ import annotations

import copy
import secrets
import string
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from ledger.testing.stripe.errors import missing

#: The API version events are rendered with (the one the newest supported SDK pins).
API_VERSION = "2026-10-28.endive"

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    """A Stripe-looking id: ``cs_test_…``, ``pi_…``, ``evt_…``."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def now() -> int:
    return int(time.time())


@dataclass(frozen=True)
class RequestInfo:
    """Who asked: put on the events a request causes (``event.request``)."""

    id: str | None
    idempotency_key: str | None


#: The API request being served (None for controls, which play the dashboard or the customer).
CURRENT_REQUEST: ContextVar[RequestInfo | None] = ContextVar("stripe_standin_request", default=None)


@dataclass
class Saved:
    """An idempotent response kept for replay."""

    fingerprint: str
    status: int
    body: dict[str, Any]


@dataclass
class Store:
    base_url: str = ""
    lock: threading.RLock = field(default_factory=threading.RLock)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: What paying with a payment method does (``cards.Outcome``), by ``pm_`` id.
    card_outcomes: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    idempotent: dict[tuple[str, str], Saved] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Called with each new event (the webhook queue), under the lock.
    on_event: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    #: Checkout session line items (not part of the session object; read through their own list).
    line_items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: A session's ``payment_intent_data`` / ``subscription_data`` / ``setup_intent_data``, used on completion.
    session_options: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects[obj["id"]] = obj
        return obj

    def get(self, kind: str, object_id: str, param: str = "id") -> dict[str, Any]:
        """The object ``object_id`` of ``kind`` (its ``object`` field), else Stripe's 404."""
        obj = self.objects.get(object_id)
        if obj is None or obj["object"] != kind:
            raise missing(kind, object_id, param)
        return obj

    def all(self, kind: str, **filters: Any) -> list[dict[str, Any]]:
        """Objects of ``kind`` matching ``filters`` (None = any), newest first as Stripe lists them."""
        found = [o for o in self.objects.values() if o["object"] == kind
                 and all(v is None or o.get(k) == v for k, v in filters.items())]
        found.reverse()  # dicts keep insertion order: creation order
        return found

    def emit(self, type_: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record the event ``type_`` about a snapshot of ``obj`` and hand it to the webhook queue."""
        request = CURRENT_REQUEST.get()
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous:
            data["previous_attributes"] = copy.deepcopy(previous)
        event: dict[str, Any] = {
            "id": new_id("evt_"), "object": "event", "api_version": API_VERSION, "created": now(),
            "data": data, "livemode": False, "pending_webhooks": 0,
            "request": {"id": request.id if request else None,
                        "idempotency_key": request.idempotency_key if request else None},
            "type": type_,
        }
        self.events.append(event)
        self.objects[event["id"]] = event
        for listener in self.on_event:
            listener(event)
        return event
