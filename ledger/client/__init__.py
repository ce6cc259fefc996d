"""The Python SDK of the Credit Ledger API.

>>> from ledger.client import Client, PaymentRequiredError
>>> with Client("http://localhost:8000", api_key="cl_live_...") as client:  # doctest: +SKIP
...     client.credits.balance().available            # "2999.350000": decimal strings, and *_ucr integers
...     client.usage.charge("gpt-4o", quantities={"input_tokens": 1200, "output_tokens": 350})
...     for entry in client.credits.iter():           # every entry, newest first, cursor-stable
...         print(entry.amount, entry.operation)

The read models: ``credits.executions()`` (the billing history, a page; ``iter_executions()``
walks it all), ``credits.deployment_history()`` (hours and credits per deployment) and
``credits.activities(kind=...)`` (the activity feed; ``iter_activities()``), each page with its
``as_of_position`` and ``lag_ms``. ``credits.history()`` stays the ledger's entries.

Buying credits: ``client.billing.checkout("builder", success_url=..., cancel_url=...)`` returns
Stripe's ``checkout_url``; ``billing.portal()``, ``billing.invoices()`` and (operator keys)
``billing.refund(purchase_id, reason=...)`` do the rest.

Accounting: ``client.credits.export(from_="2026-11-01", to="2026-11-30")`` is the CSV export as
text; ``client.credits.export_to("usage.csv", ...)`` streams it into a file.

Usage and analytics: ``credits.usage(bucket="day", by="integration")``, ``credits.analytics(days=7)``,
``credits.execution(run_id)`` (one run's cost) and ``credits.flow(name)`` (a flow's), each with
``as_of_position`` and ``lag_ms``.

``AsyncClient`` has the same namespaces, awaitable (``async for`` over ``credits.iter()``).

Every write carries an idempotency key made once per call (or the one given); retries
(connection errors, 500/502/503/504) resend the same request with the same key, so a retry never
records twice. A 429 raises ``RateLimitedError`` at once, its ``retry_after`` in seconds; with
``Client(..., retry_on_rate_limit=N)`` the client waits ``Retry-After`` out instead, at most N
times per call and never longer than ``max_retry_after_s`` a time. Money is ``int`` µcr or
decimal strings, never floats.
"""

from ledger.client.analytics import (
    Analytics,
    CostLine,
    DayCost,
    DeploymentCost,
    ExecutionCost,
    FlowCost,
    FlowRun,
    ModelCost,
    Suggestion,
    TopRequest,
    UsageBucket,
    UsageReport,
)
from ledger.client.async_client import AsyncClient
from ledger.client.billing import (
    AutoRefill,
    CardSetup,
    CheckoutSession,
    Invoice,
    InvoicePage,
    PlanChange,
    PortalSession,
    RefillRequest,
    Refund,
)
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
from ledger.client.export import Exported
from ledger.client.gate import AsyncGate, Gate, gate
from ledger.client.history import (
    Activity,
    ActivityPage,
    DeploymentUsage,
    DeploymentUsagePage,
    Execution,
    ExecutionPage,
)
from ledger.client.models import (
    UCR_PER_CREDIT,
    Account,
    Attribution,
    Balance,
    Charge,
    Deployment,
    Draw,
    Entry,
    EntryPage,
    Estimate,
    Grant,
    Me,
    PriceLine,
    Release,
    Reservation,
    Settlement,
    SourceAmounts,
    UsageEvent,
    UsageResult,
    format_credits,
    to_ucr,
)
from ledger.client.sync_client import Client

__all__ = [
    "UCR_PER_CREDIT",
    "Account",
    "AccountRequiredError",
    "Activity",
    "ActivityPage",
    "Analytics",
    "AsyncClient",
    "AsyncGate",
    "Attribution",
    "AuthenticationError",
    "AutoRefill",
    "Balance",
    "CardSetup",
    "Charge",
    "CheckoutSession",
    "Client",
    "ConflictError",
    "CostLine",
    "DayCost",
    "Deployment",
    "DeploymentCost",
    "DeploymentUsage",
    "DeploymentUsagePage",
    "Draw",
    "Entry",
    "EntryPage",
    "Estimate",
    "Execution",
    "ExecutionCost",
    "ExecutionPage",
    "Exported",
    "FlowCost",
    "FlowRun",
    "Gate",
    "Grant",
    "IdempotencyConflictError",
    "InvalidRequestError",
    "Invoice",
    "InvoicePage",
    "LedgerAPIError",
    "LedgerClientError",
    "LedgerConnectionError",
    "Me",
    "ModelCost",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "PlanChange",
    "PortalSession",
    "PriceLine",
    "RateLimitedError",
    "RefillRequest",
    "Refund",
    "Release",
    "Reservation",
    "ServerError",
    "Settlement",
    "SourceAmounts",
    "Suggestion",
    "TopRequest",
    "UsageBucket",
    "UsageEvent",
    "UsageReport",
    "UsageResult",
    "format_credits",
    "gate",
    "to_ucr",
]
