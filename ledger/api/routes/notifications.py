"""Alerts raised on the account, and the webhook endpoints they (and every event) are sent to."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from ledger.api import schemas as s
from ledger.api.body import JsonBodyRoute
from ledger.api.deps import RT, Admin, IdemHeader, Reader, idempotency_key, replayed
from ledger.api.routes.balance import decode_cursor, encode_cursor
from ledger.events import AlertRaised
from ledger.money import format_credits
from workers.webhooks import Endpoint, create_endpoint, delete_endpoint, list_endpoints, set_endpoint_enabled

router = APIRouter(tags=["notifications"], responses=s.ERRORS, route_class=JsonBodyRoute)


@router.get("/v1/accounts/{account}/notifications", response_model=s.NotificationPage)
async def notifications(account: str, rt: RT, who: Reader, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                        cursor: Annotated[str | None, Query(max_length=100)] = None) -> s.NotificationPage:
    """Alerts raised (budget and limit thresholds, low balance, summaries), newest first."""
    rows = await rt.ledger.notifications(account, limit=limit + 1,
                                         before_version=decode_cursor(cursor) if cursor else None)
    more = len(rows) > limit
    rows = rows[:limit]
    data = [s.NotificationOut(
        id=e.event_id, created_at=e.recorded_at, kind=e.kind, level=e.level, message=e.message, scope=e.scope,
        subject=e.subject, period=e.period, threshold_pct=e.threshold_pct, spent=format_credits(e.spent_ucr),
        spent_ucr=e.spent_ucr, limit=format_credits(e.limit_ucr), limit_ucr=e.limit_ucr)
        for _, e in rows if isinstance(e, AlertRaised)]
    return s.NotificationPage(data=data, has_more=more, next_cursor=encode_cursor(rows[-1][0]) if more else None)


def _out(e: Endpoint) -> s.WebhookEndpointOut:
    return s.WebhookEndpointOut(id=e.endpoint_id, url=e.url, events=e.event_types, status=e.status,
                                enabled=e.status == "enabled", created_at=e.created_at, secret=e.secret)


@router.post("/v1/accounts/{account}/webhook-endpoints", status_code=status.HTTP_201_CREATED,
             response_model=s.WebhookEndpointOut)
async def add_endpoint(account: str, body: s.WebhookEndpointIn, rt: RT, who: Admin, response: Response,
                       idem: IdemHeader = None) -> s.WebhookEndpointOut:
    """Send the account's events to ``url``, signed (Standard Webhooks); the secret is shown once.

    URLs on private, loopback or link-local addresses are refused unless the operator allows them.
    """
    await rt.ledger.account(account)
    endpoint, was_replayed = await create_endpoint(
        rt.ledger.engine, account, body.url, body.events, allow_private=rt.settings.webhook_allow_private,
        now=rt.ledger.clock.now(), idempotency_key=idempotency_key(idem, body.idempotency_key))
    replayed(response, was_replayed)
    return _out(endpoint)


@router.get("/v1/accounts/{account}/webhook-endpoints", response_model=s.WebhookEndpointList)
async def get_endpoints(account: str, rt: RT, who: Admin) -> s.WebhookEndpointList:
    """The account's endpoints (without secrets)."""
    await rt.ledger.account(account)
    return s.WebhookEndpointList(data=[_out(e) for e in await list_endpoints(rt.ledger.engine, account)])


@router.patch("/v1/accounts/{account}/webhook-endpoints/{endpoint_id}", response_model=s.WebhookEndpointOut)
async def patch_endpoint(account: str, endpoint_id: str, body: s.WebhookEndpointPatch, rt: RT,
                         who: Admin) -> s.WebhookEndpointOut:
    """Disable (``{"enabled": false}``) or enable an endpoint; disabled, it gets no deliveries."""
    await rt.ledger.account(account)
    return _out(await set_endpoint_enabled(rt.ledger.engine, account, endpoint_id, body.enabled))


@router.delete("/v1/accounts/{account}/webhook-endpoints/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT,
               response_class=Response)
async def remove_endpoint(account: str, endpoint_id: str, rt: RT, who: Admin) -> Response:
    """Delete an endpoint: no deliveries from now on, even of events already queued for it."""
    await rt.ledger.account(account)
    await delete_endpoint(rt.ledger.engine, account, endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
