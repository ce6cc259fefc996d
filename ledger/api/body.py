"""The one rule for reading a request body: JSON, in UTF-8.

Every route that takes a body reads it here first (``JsonBodyRoute``), before the key is looked at,
like any request that cannot be parsed: a body sent as another content type is a 415 that says
what to send (curl's ``-d`` alone sends a form); bytes that are not UTF-8 (a UTF-16 body, with or
without a BOM) or not JSON are a 400. Fields that do not fit the route's schema are a 422 later.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from pydantic_core import PydanticUndefined
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ledger.errors import MalformedRequest, UnsupportedMediaType

SEND_JSON = "send the body as JSON with `Content-Type: application/json`"


def is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/<anything>+json``, with any parameters."""
    media = (content_type or "").partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def read_json(request: Request) -> Any:
    """The body as JSON, or ``PydanticUndefined`` when there is none (as FastAPI: the parameter's default)."""
    try:
        raw = await request.body()
    except ClientDisconnect:
        raise MalformedRequest("the body ended before its end (the client went away)") from None
    if not raw:
        return PydanticUndefined
    content_type = request.headers.get("content-type")
    if not is_json(content_type):
        sent = f"; this one is {content_type!r}" if content_type else "; this one has no Content-Type"
        raise UnsupportedMediaType(SEND_JSON + sent)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest(f"the body is not UTF-8 (byte {exc.start} is {raw[exc.start]:#04x})") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from None


class JsonBodyRoute(APIRoute):
    """FastAPI's route, whose handler first holds a body to the rule above when the route takes one.

    FastAPI alone would read any ``+json`` type, let ``json`` guess UTF-16 and UTF-32, and answer a
    form or a malformed body with a 422. Starlette keeps the bytes read here, so FastAPI's handler
    parses the same body without reading it again.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        standard = super().get_route_handler()
        if self.body_field is None:
            return standard

        async def handler(request: Request) -> Response:
            await read_json(request)
            return await standard(request)

        return handler
