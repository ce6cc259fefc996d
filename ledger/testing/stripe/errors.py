"""Stripe's error responses: ``{"error": {"type", "code", "message", "param", "decline_code"}}``."""

from __future__ import annotations

from typing import Any


class StripeError(Exception):
    """An error the API answers with Stripe's body and status (400, 401, 402, 404)."""

    def __init__(self, status: int, type_: str, message: str, *, code: str | None = None,
                 param: str | None = None, decline_code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"type": type_, "message": message}
        for name, value in (("code", code), ("param", param), ("decline_code", decline_code)):
            if value is not None:
                self.body[name] = value
        self.body.update(extra)

    def payload(self) -> dict[str, Any]:
        return {"error": self.body}


def invalid_request(message: str, *, param: str | None = None, code: str | None = None,
                    status: int = 400) -> StripeError:
    return StripeError(status, "invalid_request_error", message, param=param, code=code)


def missing(kind: str, object_id: str, param: str = "id") -> StripeError:
    return StripeError(404, "invalid_request_error", f"No such {kind}: '{object_id}'", code="resource_missing",
                       param=param)


def unauthorized(message: str) -> StripeError:
    return StripeError(401, "invalid_request_error", message)


def idempotency_conflict(key: str) -> StripeError:
    return StripeError(400, "idempotency_error",
                       f"Keys for idempotent requests can only be used with the same parameters they were first "
                       f"used with. Try using a key other than '{key}' if you meant to execute a different request.")
