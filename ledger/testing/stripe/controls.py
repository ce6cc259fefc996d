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


def _opt_str(body: dict[str, Any], name: str, default: str | None = None, choices: tuple[str, ...] = ()
             ) -> str | None:
    value = body.get(name, default)
    if value is not None and (not isinstance(value, str) or (choices and value not in choices)):
        raise invalid_request(f"{name} must be {' or '.join(choices) if choices else 'a string'}", param=name)
    return value


def _flag(body: dict[str, Any], name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if isinstance(value, str) and value in ("true", "false"):  # from a query string
        return value == "true"
    if not isinstance(value, bool):
        raise invalid_request(f"{name} must be true or false", param=name)
    return value


def _deliver(s: StripeStandIn, path: dict[str, str], body: dict[str, Any]) -> Any:
    times = _opt_int(body, "times")
    times = 1 if times is None else times
    if not 1 <= times <= 50:
        raise invalid_request("times must be between 1 and 50", param="times")
    done = s.deliver(path["id"], times=times, concurrently=_flag(body, "concurrently"),
                     signed_at=_opt_int(body, "signed_at"), secret=_opt_str(body, "secret"),
                     tamper=_flag(body, "tamper"))
    return [dataclasses.asdict(d) for d in done]


def _flush(s: StripeStandIn, path: dict[str, str], body: dict[str, Any]) -> Any:
    timeout = body.get("timeout", 10)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 120:  # float-ok
        raise invalid_request("timeout must be a number of seconds up to 120", param="timeout")
    return {"flushed": s.flush(float(timeout))}  # float-ok: a duration


def _config(s: StripeStandIn, path: dict[str, str], body: dict[str, Any]) -> Any:
    auto = _flag(body, "auto_deliver", s.auto_deliver)
    if "webhook_urls" in body:
        urls = body["webhook_urls"]
        if not isinstance(urls, list) or not all(isinstance(u, str) and u.startswith(("http://", "https://"))
                                                 for u in urls):
            raise invalid_request("webhook_urls must be a list of http(s) URLs", param="webhook_urls")
        s.webhook_urls = urls
    s.auto_deliver = auto
    return {"base_url": s.base_url, "webhook_urls": s.webhook_urls, "auto_deliver": s.auto_deliver}


ACTIONS: list[tuple[str, str, Action]] = [
    ("GET", "/_standin", _config),
    ("POST", "/_standin/config", _config),
    ("POST", "/_standin/checkout/{id}/complete", lambda s, p, b: s.complete_checkout(
        p["id"], outcome="async" if _opt_str(b, "outcome", "paid", ("paid", "async")) == "async" else "paid",
        amount=_opt_int(b, "amount"), payment_method=_opt_str(b, "payment_method", "pm_card_visa") or "")),
    ("POST", "/_standin/checkout/{id}/settle", lambda s, p, b: s.settle_async(
        p["id"], succeeded=_flag(b, "succeeded", True))),
    ("POST", "/_standin/checkout/{id}/fail", lambda s, p, b: s.fail_payment(
        p["id"], payment_method=_opt_str(b, "payment_method", "pm_card_chargeDeclined") or "")),
    ("POST", "/_standin/subscriptions/{id}/renew", lambda s, p, b: s.renew(p["id"])),
    ("POST", "/_standin/subscriptions/{id}/end_period", lambda s, p, b: s.end_period(p["id"])),
    ("POST", "/_standin/refunds", lambda s, p, b: s.refund(
        _opt_str(b, "payment_intent"), charge=_opt_str(b, "charge"), amount=_opt_int(b, "amount"),
        reason=_opt_str(b, "reason"))),
    ("POST", "/_standin/disputes", lambda s, p, b: s.dispute(
        _opt_str(b, "payment_intent"), charge=_opt_str(b, "charge"), amount=_opt_int(b, "amount"),
        reason=_opt_str(b, "reason", "fraudulent") or "fraudulent")),
    ("POST", "/_standin/disputes/{id}/close", lambda s, p, b: s.close_dispute(p["id"], won=_flag(b, "won"))),
    ("POST", "/_standin/customers/{id}/card", lambda s, p, b: s.update_card(
        p["id"], _opt_str(b, "payment_method", "pm_card_visa") or "")),
    ("GET", "/_standin/events", lambda s, p, b: s.events(_opt_str(b, "type"))),
    ("POST", "/_standin/events/{id}/deliver", _deliver),
    ("GET", "/_standin/deliveries", lambda s, p, b: [dataclasses.asdict(d) for d in s.deliveries]),
    ("POST", "/_standin/flush", _flush),
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
