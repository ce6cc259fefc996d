"""The Python SDK of the Credit Ledger API.

>>> from ledger.client import Client, PaymentRequiredError
>>> with Client("http://localhost:8000", api_key="cl_live_...") as client:
...     client.credits.balance().available            # "24.876500": decimal strings, and *_ucr integers
...     client.usage.charge("gpt-4o", quantities={"input_tokens": 1200, "output_tokens": 350})

Every write carries an idempotency key made once per call; retries (connection errors, 429
after ``Retry-After``, 5xx) reuse it, so a retry never records twice.
"""

from ledger.client._async import AsyncClient
from ledger.client._sync import Client
from ledger.client.errors import (
    AccountRequiredError,
    AuthenticationError,
    ConflictError,
    IdempotencyConflictError,
    InvalidRequestError,
    LedgerAPIError,
    LedgerClientError,
    LedgerConnectionError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
)
from ledger.client.models import (
    Account,
    Balance,
    Charge,
    Deployment,
    Entry,
    EntryPage,
    Estimate,
    Grant,
    Release,
    Reservation,
    Settlement,
    UsageEvent,
    UsageResult,
    to_ucr,
)

__all__ = [
    "Account",
    "AccountRequiredError",
    "AsyncClient",
    "AuthenticationError",
    "Balance",
    "Charge",
    "Client",
    "ConflictError",
    "Deployment",
    "Entry",
    "EntryPage",
    "Estimate",
    "Grant",
    "IdempotencyConflictError",
    "InvalidRequestError",
    "LedgerAPIError",
    "LedgerClientError",
    "LedgerConnectionError",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitedError",
    "Release",
    "Reservation",
    "ServerError",
    "Settlement",
    "UsageEvent",
    "UsageResult",
    "to_ucr",
]
