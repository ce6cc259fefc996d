"""Every error -> ``application/problem+json``, in one place.

Domain errors carry their status and fields (``ledger.errors``); request validation, unknown
routes and anything unexpected are mapped here too, so no response is ever an HTML page or a
bare ``{"detail": ...}``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.db import unreachable
from ledger.errors import LedgerError, Unauthorized, Unavailable

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
_BASE = "https://credit-ledger.dev/problems/"


def problem_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(jsonable_encoder(body), status_code=status, media_type=PROBLEM, headers=headers)


async def ledger_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LedgerError)
    headers: dict[str, str] = {}
    if exc.retry_after_s is not None:  # a 429, an outage, a lost commit
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if exc.status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc.detail)
    return problem_response(exc.status, exc.problem(), headers)


def _invalid(raw_errors: Any, *, skip_body: bool) -> JSONResponse:
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
              for e in raw_errors]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"] if not (skip_body and p == "body"))
    detail = f"{where}: {first['msg']}" if where else str(first["msg"])
    return problem_response(422, {"type": _BASE + "invalid-request", "title": "Invalid request", "status": 422,
                                  "detail": detail, "errors": errors})


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """The request did not match its schema (including malformed JSON and JSON floats for money)."""
    assert isinstance(exc, RequestValidationError)
    return _invalid(exc.errors(), skip_body=True)


async def domain_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """A command the route built was refused by its own validation (e.g. a NUL character)."""
    assert isinstance(exc, ValidationError)
    return _invalid(exc.errors(), skip_body=False)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    return problem_response(exc.status_code, {"type": _BASE + slug, "title": str(exc.detail),
                                              "status": exc.status_code, "detail": str(exc.detail)},
                            dict(exc.headers or {}))


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """An exception no handler took: an outage (the database unreachable) is a 503 to retry; anything
    else is a bug, logged, and a 500."""
    if unreachable(exc):
        log.warning("%s %s: the database is unreachable: %r", request.method, request.url.path, exc)
        return await ledger_error(request, Unavailable(
            "the database cannot be reached; retry later (a write with the same Idempotency-Key)"))
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(500, {"type": _BASE + "internal", "title": "Internal server error", "status": 500,
                                  "detail": "the server failed; nothing is known to be recorded unless a retry"
                                            " with the same Idempotency-Key says so"})


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``. ``Exception`` lands in Starlette's ``ServerErrorMiddleware``,
    the last resort for errors outside ``edge.Edge``, which answers all the others."""
    app.add_exception_handler(LedgerError, ledger_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ValidationError, domain_validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
