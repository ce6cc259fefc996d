"""Outbound webhooks: endpoints per account, Standard Webhooks signatures, delivery with retries.

Each (endpoint, event) is one delivery whose ``webhook-id`` is the event's id, so a receiver can
drop the duplicates that retries and at-least-once queues produce. A 2xx delivers it; a 410
disables the endpoint (the receiver said it is gone); anything else is retried with backoff
until the maximum attempts or age, then the delivery is ``dead``. URLs that resolve to private,
loopback or link-local addresses are refused unless the operator allows them.

PostgreSQL, not the broker, holds each delivery's schedule (``webhook_deliveries``): when its
next attempt is due and whether it is in flight (a lease that runs out, so a lost message or a
worker killed mid-send strands nothing). The broker only carries the attempts; the scheduler's
sweep sends again whatever is due and not in flight, so retries go on after Redis lost its queues.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import json
import logging
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from uuid import UUID

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from standardwebhooks import Webhook

from ledger.errors import IdempotencyConflict, InvalidRequest, NotFound
from ledger.events import Event, event_data
from ledger.money import format_credits
from ledger.settings import Settings
from ledger.store import new_uuid

if TYPE_CHECKING:
    from ledger.service import Ledger
    from workers.context import WorkerContext

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Schedule:
    """When a delivery is tried again and when it is given up (from the settings)."""

    #: Attempts in all: the first and ``CREDITS_WEBHOOK_MAX_RETRIES`` more.
    max_attempts: int = 13
    min_backoff: timedelta = timedelta(seconds=10)
    max_backoff: timedelta = timedelta(hours=6)
    #: A delivery older than this is ``dead`` at its next failure.
    max_age: timedelta = timedelta(days=3)
    #: A delivery handed to the broker is in flight until this long past its due time.
    queue_lease: timedelta = timedelta(minutes=5)
    #: A delivery being sent is in flight this long (the HTTP timeout is 10 s per phase).
    send_lease: timedelta = timedelta(minutes=2)

    @classmethod
    def of(cls, settings: Settings) -> Schedule:
        return cls(max_attempts=1 + settings.webhook_max_retries,
                   min_backoff=timedelta(milliseconds=settings.webhook_min_backoff_ms),
                   max_backoff=timedelta(milliseconds=settings.webhook_max_backoff_ms),
                   max_age=timedelta(seconds=settings.webhook_max_age_s),
                   queue_lease=timedelta(seconds=settings.webhook_lease_s))

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed attempt: doubling from ``min_backoff``, capped."""
        doubled: timedelta = self.min_backoff * (1 << min(max(attempts - 1, 0), 40))
        return min(self.max_backoff, doubled)


@dataclass(frozen=True)
class Due:
    """A delivery to send: its message's arguments. ``attempt`` is the number of attempts made
    when it was handed over, the message's ticket: only the message holding the current count may
    send it, so a duplicate or stale message (a redelivery, the sweep's resend of one the broker
    still had) is skipped instead of posting twice."""

    account_id: str
    endpoint_id: str
    event_id: str
    attempt: int


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt came to: ``delivered``, ``gone``, ``failed`` (retry at
    ``retry`` after ``delay``), ``dead``, ``skipped``."""

    outcome: str
    retry: Due | None = None
    delay: timedelta | None = None


_WHERE = "account_id = :a AND endpoint_id = :e AND event_id = :v"
#: Not final: sent when due (``next_attempt_at``) unless in flight (``lease_until``).
_OPEN = "status IN ('pending', 'failed')"


async def register(conn: AsyncConnection, deliveries: Sequence[tuple[str, str, str]], now: datetime,
                   lease: timedelta) -> None:
    """Record deliveries about to be handed to the broker (the relay, before it sends them): due
    now and in flight for ``lease``. One that exists already is left as it is."""
    if not deliveries:
        return
    accounts, endpoints, events = (list(x) for x in zip(*deliveries, strict=True))
    await conn.execute(text(
        "INSERT INTO webhook_deliveries (account_id, endpoint_id, event_id, status, attempts, updated_at,"
        " next_attempt_at, lease_until, created_at)"
        " SELECT a, e, CAST(v AS uuid), 'pending', 0, :now, :now, :lease, :now"
        " FROM unnest(CAST(:a AS text[]), CAST(:e AS text[]), CAST(:v AS text[])) AS d(a, e, v)"
        " ON CONFLICT (account_id, endpoint_id, event_id) DO NOTHING"),
        {"a": accounts, "e": endpoints, "v": events, "now": now, "lease": now + lease})


async def claim_due(conn: AsyncConnection, now: datetime, lease: timedelta, limit: int = 1000) -> list[Due]:
    """Take the deliveries that are due and not in flight, marking them in flight for ``lease``
    (the caller hands them to the broker after its transaction commits).

    ``FOR UPDATE SKIP LOCKED``: two sweeps at once (two schedulers, a tick from cron) each take
    rows the other has not. A row one sweep is claiming is locked, and the other passes over it
    instead of reading it as due too and enqueueing it a second time; once the first commits,
    the row's lease keeps it out of every sweep until the lease runs out.
    """
    rows = (await conn.execute(text(
        "WITH due AS (SELECT account_id, endpoint_id, event_id FROM webhook_deliveries"
        "  WHERE next_attempt_at <= :now AND (lease_until IS NULL OR lease_until <= :now)"
        "  ORDER BY next_attempt_at LIMIT :n FOR UPDATE SKIP LOCKED)"
        " UPDATE webhook_deliveries d SET lease_until = :lease FROM due"
        " WHERE (d.account_id, d.endpoint_id, d.event_id) = (due.account_id, due.endpoint_id, due.event_id)"
        " RETURNING d.account_id, d.endpoint_id, d.event_id, d.attempts"),
        {"now": now, "lease": now + lease, "n": limit})).all()
    return [Due(r.account_id, r.endpoint_id, str(r.event_id), r.attempts) for r in rows]


async def sweep(engine: AsyncEngine, now: datetime, schedule: Schedule) -> list[Due]:
    """``claim_due`` in a transaction of its own."""
    async with engine.begin() as conn:
        return await claim_due(conn, now, schedule.queue_lease)


async def _claim(engine: AsyncEngine, key: dict[str, object], ticket: int | None, now: datetime,
                 schedule: Schedule) -> tuple[int, datetime] | None:
    """Start an attempt: count it and mark the delivery in flight while it is sent; ``(attempts,
    created_at)``, or ``None`` when it is final or the ticket is stale."""
    async with engine.begin() as conn:
        if ticket is None:  # a message from before deliveries were scheduled here: no row yet
            await register(conn, [(str(key["a"]), str(key["e"]), str(key["v"]))], now, schedule.send_lease)
        row = (await conn.execute(text(
            f"UPDATE webhook_deliveries SET attempts = attempts + 1, lease_until = :lease, updated_at = :now"
            f" WHERE {_WHERE} AND {_OPEN} AND (CAST(:t AS integer) IS NULL OR attempts = :t)"
            " RETURNING attempts, created_at"), {**key, "t": ticket, "now": now,
                                                 "lease": now + schedule.send_lease})).first()
    return (row.attempts, row.created_at) if row is not None else None


async def _settle(engine: AsyncEngine, key: dict[str, object], status: str, now: datetime, *,
                  code: int | None = None, error: str | None = None, next_at: datetime | None = None,
                  lease: datetime | None = None) -> None:
    """Record an attempt's outcome; a final one (``next_at`` None) ends the schedule."""
    async with engine.begin() as conn:
        await conn.execute(text(
            f"UPDATE webhook_deliveries SET status = :s, last_status_code = :c, last_error = :err,"
            f" updated_at = :now, next_attempt_at = :next, lease_until = :lease WHERE {_WHERE} AND {_OPEN}"),
            {**key, "s": status, "c": code, "err": error, "now": now, "next": next_at, "lease": lease})
        if status == "gone":
            await conn.execute(text(
                "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = 'receiver answered 410 Gone'"
                " WHERE account_id = :a AND endpoint_id = :e"), {"a": key["a"], "e": key["e"]})


async def deliver(ledger: Ledger, ctx: WorkerContext, account_id: str, endpoint_id: str, event_id: str,
                  ticket: int | None = None) -> Attempt:
    """One attempt at delivering one event to one endpoint (see ``Attempt``).

    PostgreSQL holds the schedule: a failure sets when the next attempt is due, and the caller
    hands that attempt to the broker as a delayed message; if the broker loses it, its lease runs
    out and the scheduler's sweep (``claim_due``) sends it again, with the same ``webhook-id``.
    """
    engine = ledger.engine
    schedule = ctx.webhook_schedule
    key: dict[str, object] = {"a": account_id, "e": endpoint_id, "v": UUID(event_id)}
    now = ctx.clock.now()
    claimed = await _claim(engine, key, ticket, now, schedule)
    if claimed is None:
        return Attempt("skipped")  # final already, or a duplicate / stale message
    attempts, created_at = claimed
    async with engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT url, secret, status FROM webhook_endpoints WHERE account_id = :a AND endpoint_id = :e"),
            {"a": account_id, "e": endpoint_id})).first()
    if row is None or row.status != "enabled":
        await _settle(engine, key, "skipped", now, error="the endpoint is disabled or removed")
        return Attempt("skipped")
    try:
        _, event = await ledger.entry(account_id, UUID(event_id))
    except NotFound:
        await _settle(engine, key, "dead", now, error="the event is not in the log")
        return Attempt("dead")
    code: int | None = None
    try:
        await check_url(row.url, allow_private=ctx.settings.webhook_allow_private)
        body = payload(event)
        sent_at = datetime.now(UTC)  # the signature's time is the wall clock's: receivers check it
        signature = Webhook(row.secret).sign(event_id, sent_at, body)
        headers = {"webhook-id": event_id, "webhook-timestamp": str(int(sent_at.timestamp())),
                   "webhook-signature": signature, "content-type": "application/json",
                   "user-agent": "credit-ledger-webhooks/1"}
        if ctx.http is None:
            ctx.http = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        response = await ctx.http.post(row.url, content=body, headers=headers)
        code = response.status_code
        if 200 <= code < 300:
            await _settle(engine, key, "delivered", now, code=code)
            return Attempt("delivered")
        if code == 410:
            await _settle(engine, key, "gone", now, code=code)
            return Attempt("gone")
        error = response.text[:200]
    except (httpx.HTTPError, InvalidRequest) as exc:
        error = f"{type(exc).__name__}: {exc}"[:200]
    now = ctx.clock.now()
    if attempts >= schedule.max_attempts or now - created_at >= schedule.max_age:
        log.warning("webhook %s to %s/%s is dead after %d attempts: %s", event_id, account_id, endpoint_id,
                    attempts, error)
        await _settle(engine, key, "dead", now, code=code, error=error)
        return Attempt("dead")
    delay = schedule.backoff(attempts)
    await _settle(engine, key, "failed", now, code=code, error=error, next_at=now + delay,
                  lease=now + delay + schedule.queue_lease)
    return Attempt("failed", Due(account_id, endpoint_id, event_id, attempts), delay)


def wants(endpoint_types: list[str] | None, event_type: str) -> bool:
    """Whether an endpoint subscribed to ``event_type`` (no list: every type)."""
    return endpoint_types is None or event_type in endpoint_types
