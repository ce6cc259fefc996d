"""The SDK's errors: one tree, built from the API's ``application/problem+json`` documents.

``LedgerClientError`` is the root of everything the SDK raises on purpose. ``LedgerAPIError``
is an answer from the server (its status, problem ``type``, ``title``, ``detail`` and the whole
``problem`` document); ``LedgerConnectionError`` means no answer came (after the retries).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx


class LedgerClientError(Exception):
    """Base of every error the SDK raises on purpose."""


class AccountRequiredError(LedgerClientError, ValueError):
    """An operator key acts on every account: name one (``account_id=`` or ``client.for_account(id)``)."""


class LedgerConnectionError(LedgerClientError):
    """The server could not be reached or did not answer, after every retry.

    A write may or may not have been recorded: call it again with the same ``idempotency_key``
    to find out (a recorded write replays, a lost one runs).
    """


class LedgerAPIError(LedgerClientError):
    """An error answer from the API (a problem document)."""

    def __init__(self, status: int, type: str, title: str, detail: str, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.problem = problem

    @property
    def slug(self) -> str:
        """The problem type's last segment, e.g. ``"payment-required"``."""
        return self.type.rstrip("/").rsplit("/", 1)[-1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, type={self.type!r}, detail={self.detail!r})"


class PaymentRequiredError(LedgerAPIError):
    """402: the account may not spend this much; nothing was recorded."""

    def __init__(self, status: int, type: str, title: str, detail: str, problem: dict[str, Any]) -> None:
        super().__init__(status, type, title, detail, problem)
        self.required: str | None = _str(problem.get("required"))
        self.required_ucr: int | None = _int(problem.get("required_ucr"))
        self.remaining: str | None = _str(problem.get("remaining"))
        self.remaining_ucr: int | None = _int(problem.get("remaining_ucr"))
        self.reason: str | None = _str(problem.get("reason"))
        self.upgrade_url: str | None = _str(problem.get("upgrade_url"))


class AuthenticationError(LedgerAPIError):
    """401: no API key, or one that is malformed, unknown or revoked."""


class PermissionDeniedError(LedgerAPIError):
    """403: the key's role is too weak for this request."""


class NotFoundError(LedgerAPIError):
    """404: no such thing, or an account this key may not see."""


class ConflictError(LedgerAPIError):
    """409: the request does not fit the current state."""


class IdempotencyConflictError(ConflictError):
    """409: the idempotency key was used before with a different request."""


class InvalidRequestError(LedgerAPIError):
    """422: malformed or out of range (unknown operation, bad quantity, coupon refused, ...)."""


class RateLimitedError(LedgerAPIError):
    """429: over the plan's request rate; nothing was recorded.

    ``retry_after`` is the seconds to wait before trying again (the ``Retry-After`` header, else
    the problem's ``retry_after_s``; ``None`` if the answer gave neither). The client raises this
    at once unless it was built with ``retry_on_rate_limit=N``.
    """

    def __init__(self, status: int, type: str, title: str, detail: str, problem: dict[str, Any],
                 retry_after_s: int | None = None) -> None:
        super().__init__(status, type, title, detail, problem)
        self.retry_after: int | None = retry_after_s if retry_after_s is not None else _int(
            problem.get("retry_after_s"))

    @property
    def retry_after_s(self) -> int | None:
        """The same as ``retry_after``."""
        return self.retry_after


class ServerError(LedgerAPIError):
    """5xx: the server failed. Retrying a write with the same idempotency key is safe."""


_BY_STATUS: dict[int, type[LedgerAPIError]] = {
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: InvalidRequestError,
}


def error_class(status: int, type: str) -> type[LedgerAPIError]:
    """The exception class for an answer's status and problem type."""
    if status == 409 and type.rstrip("/").endswith("/idempotency-conflict"):
        return IdempotencyConflictError
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, LedgerAPIError)


def error_from_problem(problem: dict[str, Any], *, status: int | None = None,
                       retry_after_s: int | None = None) -> LedgerAPIError:
    """The exception for a problem document (e.g. a rejected item of a usage batch)."""
    code = status if status is not None else (_int(problem.get("status")) or 400)
    kind = _str(problem.get("type")) or "about:blank"
    title = _str(problem.get("title")) or "Error"
    detail = _str(problem.get("detail")) or ""
    cls = error_class(code, kind)
    if cls is RateLimitedError or code == 429:
        return RateLimitedError(code, kind, title, detail, problem, retry_after_s)
    return cls(code, kind, title, detail, problem)


def error_from_response(response: httpx.Response) -> LedgerAPIError:
    """The exception for an error answer, problem+json or not (a proxy's HTML page, say)."""
    problem: dict[str, Any]
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        problem = body
    else:
        problem = {"type": "about:blank", "title": response.reason_phrase or "HTTP error",
                   "status": response.status_code, "detail": response.text[:500]}
    return error_from_problem(problem, status=response.status_code,
                              retry_after_s=retry_after_seconds(response.headers.get("Retry-After")))


def retry_after_seconds(value: str | None) -> int | None:
    """A ``Retry-After`` header in whole seconds (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0, int((when - datetime.now(UTC)).total_seconds()))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


__all__ = [
    "AccountRequiredError",
    "AuthenticationError",
    "ConflictError",
    "IdempotencyConflictError",
    "InvalidRequestError",
    "LedgerAPIError",
    "LedgerClientError",
    "LedgerConnectionError",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "error_from_problem",
    "error_from_response",
]
