"""Request dependencies: the runtime, the caller's key, account access and the rate limit.

Order matters and is the same on every route: 401 (no valid key), then 404 (another account:
never reveal that it exists), then 403 (role too weak), then 429 (over the plan's rate), and
only then is the body looked at. A refused request records nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ledger.api.runtime import Runtime
from ledger.errors import Unauthorized
from ledger.idempotency import request_key
from ledger.keys import Principal, Role

_BEARER_DESCRIPTION = "An API key: `Authorization: Bearer cl_live_...`"


async def runtime(request: Request) -> Runtime:
    # async: a plain def would be run on the thread pool for every request.
    rt: Runtime = request.app.state.runtime
    return rt


RT = Annotated[Runtime, Depends(runtime)]


async def caller(rt: Runtime, creds: HTTPAuthorizationCredentials | None) -> Principal:
    """The principal of the request's key; 401 for a missing, malformed, unknown or revoked key."""
    if creds is None:
        raise Unauthorized("send an API key as `Authorization: Bearer <key>`")
    found = await rt.principal(creds.credentials)
    if found is None:
        raise Unauthorized("the API key is not valid (unknown, malformed or revoked)")
    return found


class Access(HTTPBearer):
    """A dependency: the caller may act as ``role`` on the path's ``{account}`` (if any), within its rate.

    It *is* the bearer scheme (an ``HTTPBearer``, so OpenAPI documents it as before) and does the
    whole check in one call on purpose: FastAPI solves every dependency anew on each request, and
    a chain (runtime -> bearer -> caller -> check) was a visible share of a request's CPU.
    """

    def __init__(self, role: Role) -> None:
        # One scheme name for every role: OpenAPI shows a single ``HTTPBearer`` scheme.
        super().__init__(auto_error=False, scheme_name="HTTPBearer", description=_BEARER_DESCRIPTION)
        self.role = role

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        rt: Runtime = request.app.state.runtime
        who = await caller(rt, await super().__call__(request))
        who.require(self.role, request.path_params.get("account"))
        await rt.rate_limit(who)
        return who


Reader = Annotated[Principal, Depends(Access("read"))]
Member = Annotated[Principal, Depends(Access("member"))]
Admin = Annotated[Principal, Depends(Access("admin"))]
Operator = Annotated[Principal, Depends(Access("operator"))]

IdemHeader = Annotated[str | None, Header(
    alias="Idempotency-Key",
    description="Same key + same body: the first response again. UTF-8, at most 255 characters; the same"
                " key as the body's `idempotency_key` (both normalised alike).")]


def idempotency_key(header: str | None, body_key: str | None) -> str | None:
    """The request's idempotency key, from its header and its body (``ledger.idempotency.request_key``)."""
    return request_key(header, body_key)


def replayed(response: Response, was_replayed: bool) -> None:
    """Mark an idempotent replay (the first response again, nothing appended)."""
    if was_replayed:
        response.headers["Idempotent-Replayed"] = "true"
