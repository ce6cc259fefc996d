"""The stand-in's Starlette app: Stripe's API under ``/v1``, the controls and hosted pages under
``/_standin``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ledger.testing.stripe import api, controls, hosted

if TYPE_CHECKING:
    from ledger.testing.stripe.standin import StripeStandIn


def create_app(standin: StripeStandIn) -> Starlette:
    async def stripe_api(request: Request) -> Response:
        body = (await request.body()).decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in request.headers.items()}
        # Requests run whole under the store's lock: off the event loop, so webhook receivers that
        # call back into the stand-in are still answered.
        status, answer, extra = await run_in_threadpool(api.handle, standin.store, request.method, request.url.path,
                                                        body, request.url.query, headers)
        return JSONResponse(answer, status_code=status, headers={k: v for k, v in extra.items() if v})

    return Starlette(routes=[
        Route("/v1/{path:path}", stripe_api, methods=["GET", "POST", "DELETE"]),
        *controls.routes(standin),
        *hosted.routes(standin),
    ])
