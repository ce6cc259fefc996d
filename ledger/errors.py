"""One tree of domain errors, each carrying its HTTP status and problem type.

Raised by the domain and the store; rendered in one place by the entrypoints (problem+json over
HTTP, a one-line message in the CLI). A refused command records nothing.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ledger.money import format_credits


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose."""

    status: ClassVar[int] = 400
    type_slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"
    #: Seconds to wait before a retry, sent as ``Retry-After``; ``None``: no retry is worth it.
    retry_after_s: int | None = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def transient(self) -> bool:
        """Whether the very same request may succeed later: the one rule for what is retried.

        Every 5xx: the server's side failed (the database unreachable, a commit lost, a fault),
        not the request, so a usage item that got one is ``failed`` (retry it with the same
        key), never ``rejected``, and the workers let Dramatiq retry it. Every 4xx is the
        request's own fault and final as sent.
        """
        return self.status >= 500

    def extra(self) -> dict[str, Any]:
        """Fields added to the problem document beside type/title/status/detail."""
        return {}

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 problem document for this error."""
        return {
            "type": f"https://credit-ledger.dev/problems/{self.type_slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra(),
        }


class PaymentRequired(LedgerError):
    """A gated command costs more than the account may spend; nothing was recorded."""

    status = 402
    type_slug = "payment-required"
    title = "Payment required"

    def __init__(self, *, required_ucr: int, remaining_ucr: int, reason: str, upgrade_url: str) -> None:
        super().__init__(
            f"{reason}: requires {format_credits(required_ucr)} credits, "
            f"{format_credits(remaining_ucr)} remaining"
        )
        self.required_ucr = required_ucr
        self.remaining_ucr = remaining_ucr
        self.reason = reason
        self.upgrade_url = upgrade_url

    def extra(self) -> dict[str, Any]:
        return {
            "required": format_credits(self.required_ucr),
            "required_ucr": self.required_ucr,
            "remaining": format_credits(self.remaining_ucr),
            "remaining_ucr": self.remaining_ucr,
            "reason": self.reason,
            "upgrade_url": self.upgrade_url,
        }


class InvalidRequest(LedgerError):
    """The command is malformed or out of range (HTTP 422)."""

    status = 422
    type_slug = "invalid-request"
    title = "Invalid request"


class OutOfRange(InvalidRequest):
    """The command would take an amount past the ledger's documented ranges (``ledger.money``)."""

    type_slug = "out-of-range"
    title = "Out of range"


class UnknownOperation(InvalidRequest):
    type_slug = "unknown-operation"
    title = "Unknown operation"


class InvalidQuantity(InvalidRequest):
    type_slug = "invalid-quantity"
    title = "Invalid quantity"


class UnknownPack(InvalidRequest):
    type_slug = "unknown-pack"
    title = "Unknown credit pack"


class UnknownPlan(InvalidRequest):
    type_slug = "unknown-plan"
    title = "Unknown plan"


class CouponRejected(InvalidRequest):
    """Unknown, expired, used up, or already redeemed by this account."""

    type_slug = "coupon-rejected"
    title = "Coupon rejected"

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"coupon {code!r} {reason.replace('_', ' ')}")
        self.code = code
        self.reason = reason

    def extra(self) -> dict[str, Any]:
        return {"code": self.code, "reason": self.reason}


class PurchaseRejected(InvalidRequest):
    """What was paid does not buy what was asked: a pack not paid its price, a custom amount out of
    bounds, or credits the card does not give for the amount. Nothing was recorded."""

    type_slug = "purchase-rejected"
    title = "Purchase rejected"

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason

    def extra(self) -> dict[str, Any]:
        return {"reason": self.reason}


class RefundRejected(InvalidRequest):
    """A refund the rules do not allow (e.g. outside the rate card's refund window without ``force``)."""

    type_slug = "refund-rejected"
    title = "Refund rejected"

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason

    def extra(self) -> dict[str, Any]:
        return {"reason": self.reason}


class InvalidState(LedgerError):
    """The command does not fit the current state (e.g. resume a stopped deployment)."""

    status = 409
    type_slug = "invalid-state"
    title = "Conflict with current state"


class AutoRefillRefused(InvalidState):
    """No refill is due: ``reason`` is ``disabled``, ``no_payment_method``, ``breaker_open``,
    ``pending``, ``already_requested``, ``above_threshold``, ``runout_off`` or ``daily_cap``.
    Nothing was recorded."""

    type_slug = "auto-refill-refused"
    title = "Auto-refill refused"

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason

    def extra(self) -> dict[str, Any]:
        return {"reason": self.reason}


class IdempotencyConflict(LedgerError):
    """The idempotency key was used before with a different request."""

    status = 409
    type_slug = "idempotency-conflict"
    title = "Idempotency key reused with a different request"


class NotFound(LedgerError):
    status = 404
    type_slug = "not-found"
    title = "Not found"


class UnknownAccount(NotFound):
    type_slug = "unknown-account"
    title = "Unknown account"

    def __init__(self, account_id: str) -> None:
        super().__init__(f"no account {account_id!r}")
        self.account_id = account_id


class AccountExists(LedgerError):
    status = 409
    type_slug = "account-exists"
    title = "Account already exists"


class RateCardError(LedgerError):
    """The rate card file is invalid; nothing was loaded."""

    status = 422
    type_slug = "invalid-rate-card"
    title = "Invalid rate card"


class CommandFailed(LedgerError):
    """The database refused the command for a reason that is not a business rule (HTTP 500).

    Nothing was recorded for it; its neighbours in the same batch were retried on their own.
    """

    status = 500
    type_slug = "command-failed"
    title = "Command could not be recorded"


class OutcomeUnknown(LedgerError):
    """The database failed during COMMIT: recorded or not, nobody can say (HTTP 503).

    Retry with the same idempotency key: a recorded command replays, a lost one runs.
    """

    status = 503
    type_slug = "outcome-unknown"
    title = "Outcome unknown; retry with the same idempotency key"
    retry_after_s = 1


class Unauthorized(LedgerError):
    """No key, or a key that is malformed, unknown or revoked (one answer for all of them)."""

    status = 401
    type_slug = "unauthorized"
    title = "Missing or invalid API key"


class Forbidden(LedgerError):
    """The key may see this account but its role is too weak for the request."""

    status = 403
    type_slug = "forbidden"
    title = "Role too weak"


class RateLimited(LedgerError):
    """Over the plan's request rate; nothing was recorded. Retry after ``retry_after_s``."""

    status = 429
    type_slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, *, limit_per_minute: int, retry_after_s: int) -> None:
        super().__init__(f"over the limit of {limit_per_minute} requests per minute; retry in {retry_after_s} s")
        self.limit_per_minute = limit_per_minute
        self.retry_after_s = retry_after_s

    def extra(self) -> dict[str, Any]:
        return {"limit_per_minute": self.limit_per_minute, "retry_after_s": self.retry_after_s}


class MalformedRequest(LedgerError):
    """The request cannot be read: a body that is not UTF-8 or not JSON, a header that is not UTF-8 (HTTP 400)."""

    status = 400
    type_slug = "malformed-request"
    title = "Malformed request"


class UnsupportedMediaType(LedgerError):
    """A body sent as something other than JSON (HTTP 415)."""

    status = 415
    type_slug = "unsupported-media-type"
    title = "Unsupported media type"


class UriTooLong(LedgerError):
    """The request's path and query are longer than the API reads (HTTP 414)."""

    status = 414
    type_slug = "uri-too-long"
    title = "URI too long"


class Unavailable(LedgerError):
    """A service the request needs (the database) cannot be reached; nothing was recorded (HTTP 503)."""

    status = 503
    type_slug = "unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str, *, retry_after_s: int = 5) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s

    def extra(self) -> dict[str, Any]:
        return {"retry_after_s": self.retry_after_s}


class PaymentProviderUnavailable(Unavailable):
    """Stripe cannot be reached (or is failing); nothing was recorded: retry later (HTTP 503)."""

    type_slug = "payment-provider-unavailable"
    title = "Payment provider unavailable"


class PaymentProviderNotConfigured(LedgerError):
    """The server has no Stripe key (or webhook secret) set: an operator must configure it (HTTP 503)."""

    status = 503
    type_slug = "payment-provider-not-configured"
    title = "Payment provider not configured"


class PaymentProviderRejected(LedgerError):
    """Stripe refused a request the ledger made (bad key, an object it does not know): the server's
    setup or Stripe's state, not the caller's request (HTTP 502)."""

    status = 502
    type_slug = "payment-provider-rejected"
    title = "Payment provider refused the request"


class InvalidSignature(LedgerError):
    """A webhook whose signature does not verify: tampered, signed with another secret, unsigned or
    too old. Nothing was recorded (HTTP 400)."""

    status = 400
    type_slug = "invalid-signature"
    title = "Invalid webhook signature"
