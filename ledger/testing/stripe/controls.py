"""HTTP controls under ``/_standin/...``: the ``StripeStandIn`` methods for another process (the
CLI-run stand-in driven by the demo or a test). Bodies are JSON; answers are JSON; a refused
action answers with Stripe's error body and status.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ledger.testing.stripe.errors import StripeError, invalid_request

if TYPE_CHECKING:
    from ledger.testing.stripe.standin import StripeStandIn

Action = Callable[["StripeStandIn", dict[str, str], dict[str, Any]], Any]


def _opt_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_request(f"{name} must be an integer", param=name)
    return value


def _deliver(s: StripeStandIn, path: dict[str, str], body: dict[str, Any]) -> Any:
    done = s.deliver(path["id"], times=_opt_int(body, "times") or 1, concurrently=bool(body.get("concurrently")),
                     signed_at=_opt_int(body, "signed_at"), secret=body.get("secret"), tamper=bool(body.get("tamper")))
    return [dataclasses.asdict(d) for d in done]


def _config(s: StripeStandIn, path: dict[str, str], body: dict[str, Any]) -> Any:
    if "auto_deliver" in body:
        s.auto_deliver = bool(body["auto_deliver"])
    if "webhook_urls" in body:
        urls = body["webhook_urls"]
        if not isinstance(urls, list) or not all(isinstance(u, str) and u.startswith(("http://", "https://"))
                                                 for u in urls):
            raise invalid_request("webhook_urls must be a list of http(s) URLs", param="webhook_urls")
        s.webhook_urls = urls
    return {"base_url": s.base_url, "webhook_urls": s.webhook_urls, "auto_deliver": s.auto_deliver}


ACTIONS: list[tuple[str, str, Action]] = [
    ("GET", "/_standin", _config),
    ("POST", "/_standin/config", _config),
    ("POST", "/_standin/checkout/{id}/complete", lambda s, p, b: s.complete_checkout(
        p["id"], outcome=b.get("outcome", "paid"), amount=_opt_int(b, "amount"),
        payment_method=b.get("payment_method", "pm_card_visa"))),
    ("POST", "/_standin/checkout/{id}/settle", lambda s, p, b: s.settle_async(
        p["id"], succeeded=bool(b.get("succeeded", True)))),
    ("POST", "/_standin/checkout/{id}/fail", lambda s, p, b: s.fail_payment(
        p["id"], payment_method=b.get("payment_method", "pm_card_chargeDeclined"))),
    ("POST", "/_standin/subscriptions/{id}/renew", lambda s, p, b: s.renew(p["id"])),
    ("POST", "/_standin/subscriptions/{id}/end_period", lambda s, p, b: s.end_period(p["id"])),
    ("POST", "/_standin/refunds", lambda s, p, b: s.refund(
        b.get("payment_intent"), charge=b.get("charge"), amount=_opt_int(b, "amount"), reason=b.get("reason"))),
    ("POST", "/_standin/disputes", lambda s, p, b: s.dispute(
        b.get("payment_intent"), charge=b.get("charge"), amount=_opt_int(b, "amount"),
        reason=b.get("reason", "fraudulent"))),
    ("POST", "/_standin/disputes/{id}/close", lambda s, p, b: s.close_dispute(p["id"], won=bool(b.get("won")))),
    ("POST", "/_standin/customers/{id}/card", lambda s, p, b: s.update_card(
        p["id"], b.get("payment_method", "pm_card_visa"))),
    ("GET", "/_standin/events", lambda s, p, b: s.events(b.get("type"))),
    ("POST", "/_standin/events/{id}/deliver", _deliver),
    ("GET", "/_standin/deliveries", lambda s, p, b: [dataclasses.asdict(d) for d in s.deliveries]),
    ("POST", "/_standin/flush", lambda s, p, b: {"flushed": s.flush(float(b.get("timeout", 10)))}),
]


def _endpoint(standin: StripeStandIn, action: Action) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        raw = await request.body()
        try:
            body = dict(request.query_params)
            if raw:
                decoded = json.loads(raw)
                if not isinstance(decoded, dict):
                    raise invalid_request("The body must be a JSON object.")
                body.update(decoded)
            # The controls block (a delivery waits for the endpoint): off the event loop.
            answer = await run_in_threadpool(action, standin, dict(request.path_params), body)
        except StripeError as error:
            return JSONResponse(error.payload(), status_code=error.status)
        except json.JSONDecodeError:
            return JSONResponse(invalid_request("The body is not JSON.").payload(), status_code=400)
        return JSONResponse(answer)
    return endpoint


def routes(standin: StripeStandIn) -> list[Route]:
    return [Route(path, _endpoint(standin, action), methods=[method]) for method, path, action in ACTIONS]
