"""Outbound webhooks: endpoints per account, Standard Webhooks signatures, delivery with retries.

Each (endpoint, event) is one delivery whose ``webhook-id`` is the event's id, so a receiver can
drop the duplicates that retries and at-least-once queues produce. A 2xx delivers it; a 410
disables the endpoint (the receiver said it is gone); anything else is retried with backoff by
Dramatiq and, once the retries are spent, lands in the dead-letter queue. URLs that resolve to
private, loopback or link-local addresses are refused unless the operator allows them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import json
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from uuid import UUID

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook

from ledger.errors import IdempotencyConflict, InvalidRequest, NotFound
from ledger.events import Event, event_data
from ledger.money import format_credits
from ledger.store import new_uuid

if TYPE_CHECKING:
    from ledger.service import Ledger
    from workers.context import WorkerContext


class DeliveryFailed(Exception):
    """The receiver did not take the event; Dramatiq retries the message (same ``webhook-id``)."""


@dataclass(frozen=True)
class Endpoint:
    endpoint_id: str
    account_id: str
    url: str
    event_types: list[str] | None
    status: str
    created_at: datetime
    secret: str | None = None


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


async def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse a URL that is not http(s) or that resolves to a non-public address (SSRF guard)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("a webhook URL must be http:// or https:// with a host")
    if allow_private:
        return
    try:
        infos = await asyncio.to_thread(socket.getaddrinfo, parts.hostname, parts.port or 443, 0, socket.SOCK_STREAM)
    except OSError:
        raise InvalidRequest(f"webhook host {parts.hostname!r} does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise InvalidRequest(f"webhook URL resolves to a non-public address ({address}); refused")


async def create_endpoint(engine: AsyncEngine, account_id: str, url: str, event_types: list[str] | None, *,
                          allow_private: bool, now: datetime,
                          idempotency_key: str | None = None) -> tuple[Endpoint, bool]:
    """Register an endpoint; ``(endpoint, replayed)``. Its secret is in the result only.

    With an idempotency key the endpoint's id derives from it, so a retry finds the first
    endpoint (and gets the same response) instead of adding a second one that doubles every
    delivery; the same key with another URL or event list is a conflict.
    """
    await check_url(url, allow_private=allow_private)
    endpoint_id = (f"we_{hashlib.sha256(f'{account_id}:{idempotency_key}'.encode()).hexdigest()[:32]}"
                   if idempotency_key else f"we_{new_uuid().hex}")
    endpoint = Endpoint(endpoint_id, account_id, url, event_types, "enabled", now, new_secret())
    async with engine.begin() as conn:
        inserted = (await conn.execute(text(
            "INSERT INTO webhook_endpoints (account_id, endpoint_id, url, secret, event_types, created_at)"
            " VALUES (:a, :e, :u, :s, :t, :now) ON CONFLICT (account_id, endpoint_id) DO NOTHING"
            " RETURNING endpoint_id"),
            {"a": account_id, "e": endpoint_id, "u": url, "s": endpoint.secret, "t": event_types,
             "now": now})).first()
        if inserted is not None:
            return endpoint, False
        first = (await conn.execute(text(
            "SELECT url, secret, event_types, status, created_at FROM webhook_endpoints"
            " WHERE account_id = :a AND endpoint_id = :e"), {"a": account_id, "e": endpoint_id})).one()
    if (first.url, first.event_types) != (url, event_types):
        raise IdempotencyConflict(f"idempotency key {idempotency_key!r} was used for a different endpoint")
    return Endpoint(endpoint_id, account_id, first.url, first.event_types, first.status, first.created_at,
                    first.secret), True


async def list_endpoints(engine: AsyncEngine, account_id: str) -> list[Endpoint]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT endpoint_id, account_id, url, event_types, status, created_at FROM webhook_endpoints"
            " WHERE account_id = :a ORDER BY created_at DESC, endpoint_id"), {"a": account_id})).all()
    return [Endpoint(r.endpoint_id, r.account_id, r.url, r.event_types, r.status, r.created_at) for r in rows]


async def set_endpoint_enabled(engine: AsyncEngine, account_id: str, endpoint_id: str, enabled: bool) -> Endpoint:
    """Enable or disable an endpoint of ``account_id`` (404 when it has none by that id).

    A disabled endpoint is skipped by the relay and by deliveries already queued; events recorded
    while it is disabled are not sent when it is enabled again.
    """
    async with engine.begin() as conn:
        row = (await conn.execute(text(
            "UPDATE webhook_endpoints SET status = :s, disabled_reason = :r"
            " WHERE account_id = :a AND endpoint_id = :e"
            " RETURNING endpoint_id, account_id, url, event_types, status, created_at"),
            {"a": account_id, "e": endpoint_id, "s": "enabled" if enabled else "disabled",
             "r": None if enabled else "disabled by the account"})).first()
    if row is None:
        raise NotFound(f"webhook endpoint {endpoint_id!r} not found")
    return Endpoint(row.endpoint_id, row.account_id, row.url, row.event_types, row.status, row.created_at)


async def delete_endpoint(engine: AsyncEngine, account_id: str, endpoint_id: str) -> None:
    """Delete an endpoint of ``account_id`` and its delivery records (404 when it has none by that id).

    Deliveries already queued find no endpoint and are skipped.
    """
    async with engine.begin() as conn:
        gone = (await conn.execute(text(
            "DELETE FROM webhook_endpoints WHERE account_id = :a AND endpoint_id = :e RETURNING endpoint_id"),
            {"a": account_id, "e": endpoint_id})).first()
        if gone is None:
            raise NotFound(f"webhook endpoint {endpoint_id!r} not found")
        await conn.execute(text("DELETE FROM webhook_deliveries WHERE account_id = :a AND endpoint_id = :e"),
                           {"a": account_id, "e": endpoint_id})


def payload(e: Event) -> str:
    """The JSON body of an event's webhook: envelope, money twice, and the event's own fields."""
    return json.dumps({
        "id": str(e.event_id), "type": e.type, "account_id": e.account_id,
        "occurred_at": e.occurred_at.isoformat(), "recorded_at": e.recorded_at.isoformat(),
        "amount": format_credits(e.amount_ucr), "amount_ucr": e.amount_ucr,
        "balance_after": format_credits(e.balance_after_ucr), "balance_after_ucr": e.balance_after_ucr,
        "data": event_data(e),
    }, separators=(",", ":"), sort_keys=True)


async def _record(engine: AsyncEngine, account_id: str, endpoint_id: str, event_id: UUID, status: str,
                  code: int | None, error: str | None) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO webhook_deliveries (account_id, endpoint_id, event_id, status, attempts, last_status_code,"
            " last_error, updated_at) VALUES (:a, :e, :v, :s, 1, :c, :err, now())"
            " ON CONFLICT (account_id, endpoint_id, event_id) DO UPDATE SET status = excluded.status,"
            " attempts = webhook_deliveries.attempts + 1, last_status_code = excluded.last_status_code,"
            " last_error = excluded.last_error, updated_at = excluded.updated_at"),
            {"a": account_id, "e": endpoint_id, "v": event_id, "s": status, "c": code, "err": error})
        if status == "gone":
            await conn.execute(text(
                "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = 'receiver answered 410 Gone'"
                " WHERE account_id = :a AND endpoint_id = :e"), {"a": account_id, "e": endpoint_id})


async def deliver(ledger: Ledger, ctx: WorkerContext, account_id: str, endpoint_id: str, event_id: str) -> str:
    """Deliver one event to one endpoint: ``delivered``, ``gone``, ``skipped``; raises ``DeliveryFailed``."""
    engine = ledger.engine
    async with engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT url, secret, status FROM webhook_endpoints WHERE account_id = :a AND endpoint_id = :e"),
            {"a": account_id, "e": endpoint_id})).first()
        done = (await conn.execute(text(
            "SELECT status FROM webhook_deliveries WHERE account_id = :a AND endpoint_id = :e AND event_id = :v"),
            {"a": account_id, "e": endpoint_id, "v": UUID(event_id)})).scalar()
    if row is None or row.status != "enabled" or done in ("delivered", "gone"):
        return "skipped"  # removed, disabled, or a redelivered message for a delivery already made
    try:
        _, event = await ledger.entry(account_id, UUID(event_id))
    except NotFound:
        return "skipped"
    await check_url(row.url, allow_private=ctx.settings.webhook_allow_private)
    body = payload(event)
    now = datetime.now(UTC)
    signature = Webhook(row.secret).sign(event_id, now, body)
    headers = {"webhook-id": event_id, "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": signature, "content-type": "application/json",
               "user-agent": "credit-ledger-webhooks/1"}
    if ctx.http is None:
        ctx.http = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
    try:
        response = await ctx.http.post(row.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        await _record(engine, account_id, endpoint_id, event.event_id, "failed", None, type(exc).__name__)
        raise DeliveryFailed(f"{row.url}: {type(exc).__name__}") from exc
    if 200 <= response.status_code < 300:
        await _record(engine, account_id, endpoint_id, event.event_id, "delivered", response.status_code, None)
        return "delivered"
    if response.status_code == 410:
        await _record(engine, account_id, endpoint_id, event.event_id, "gone", 410, None)
        return "gone"
    await _record(engine, account_id, endpoint_id, event.event_id, "failed", response.status_code,
                  response.text[:200])
    raise DeliveryFailed(f"{row.url} answered {response.status_code}")


def wants(endpoint_types: list[str] | None, event_type: str) -> bool:
    """Whether an endpoint subscribed to ``event_type`` (no list: every type)."""
    return endpoint_types is None or event_type in endpoint_types
