"""``Edge``: the requests no route should see, and the errors no route handler answered.

- A request target (path and query) longer than ``MAX_TARGET`` bytes: 414. (uvicorn's parser,
  httptools, cannot parse a URL over 65,535 bytes: uvicorn answers those itself, a plain-text 400
  with ``Connection: close``, before the app is called.)
- A NUL character in the path: 404. No account, key, deployment or reservation id can hold one
  (PostgreSQL text cannot), so the resource does not exist; looked up, it was a database error.
- An exception nothing else handled: the problem document of ``problems.unexpected_error``
  (500, or 503 with ``Retry-After`` when the database cannot be reached), answered here as a
  normal response. Starlette's ``ServerErrorMiddleware`` re-raises after answering, and uvicorn
  then drops the keep-alive connection without ``Connection: close``: the client's next request
  on it would end with an unknown outcome.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.api import problems
from ledger.errors import LedgerError, NotFound, UriTooLong

#: The longest path plus query string read, in bytes (RFC 9110 asks for at least 8,000).
MAX_TARGET = 8192


class Edge:
    """Pure ASGI middleware, inside the metrics so every answer here is counted (module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = _refusal(scope)
        if refused is not None:
            response = await problems.ledger_error(Request(scope), refused)
            await response(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as exc:
            if started:  # half a response is out: only closing the connection can end it
                raise
            response = await problems.unexpected_error(Request(scope), exc)
            await response(scope, receive, send)


def _refusal(scope: Scope) -> LedgerError | None:
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    length = len(raw_path) + (1 + len(query) if query else 0)
    if length > MAX_TARGET:
        return UriTooLong(f"the path and query are {length} bytes; at most {MAX_TARGET} are read")
    if "\x00" in scope["path"]:
        return NotFound("nothing has a NUL character in its path")
    return None
