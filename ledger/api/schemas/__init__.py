"""Request and response bodies of the HTTP API (API.md), as pydantic models for OpenAPI.

One module per part of the contract, as ``ledger/api/routes/``; ``fields`` holds the types the
bodies share (credits, µcr, quantities, idempotency keys), ``base`` the body classes and
``errors`` the problem documents. Everything is importable from here, as ``schemas.X``.
"""

from __future__ import annotations

from ledger.api.schemas.accounts import (
    AccountIn,
    AccountOut,
    ApiKeyIn,
    ApiKeyList,
    ApiKeyOut,
    MeOut,
)
from ledger.api.schemas.balance import (
    BalanceOut,
    Entry,
    EntryPage,
    SourceAmounts,
)
from ledger.api.schemas.base import (
    Body,
    Out,
    WriteBody,
    examples,
)
from ledger.api.schemas.catalogue import (
    PackList,
    PackOut,
    RatesOut,
)
from ledger.api.schemas.controls import (
    AutoRefillIn,
    AutoRefillOut,
    BudgetIn,
    BudgetOut,
    LimitIn,
    LimitOut,
    RefillRequestOut,
)
from ledger.api.schemas.deployments import (
    DeploymentActionIn,
    DeploymentIn,
    DeploymentList,
    DeploymentOut,
    PauseIn,
)
from ledger.api.schemas.errors import (
    ERRORS,
    PAYMENT_REQUIRED,
    PaymentRequiredProblem,
    Problem,
    problem_doc,
)
from ledger.api.schemas.fields import (
    CreditsText,
    IdempotencyKey,
    Quantities,
    Quantity,
    Ucr,
    credits,
    pick_money,
    whole_credits,
)
from ledger.api.schemas.grants import (
    CouponIn,
    GrantIn,
    GrantOut,
)
from ledger.api.schemas.notifications import (
    NotificationOut,
    NotificationPage,
    WebhookEndpointIn,
    WebhookEndpointList,
    WebhookEndpointOut,
    WebhookEndpointPatch,
)
from ledger.api.schemas.usage import (
    AttributionIn,
    ChargeOut,
    Draw,
    EstimateIn,
    EstimateOut,
    ExplainOut,
    PriceLineOut,
    ReleaseOut,
    ReservationIn,
    ReservationOut,
    SettleIn,
    SettleOut,
    UsageBatchIn,
    UsageBatchOut,
    UsageIn,
    UsageResult,
)

__all__ = [
    "ERRORS",
    "PAYMENT_REQUIRED",
    "AccountIn",
    "AccountOut",
    "ApiKeyIn",
    "ApiKeyList",
    "ApiKeyOut",
    "AttributionIn",
    "AutoRefillIn",
    "AutoRefillOut",
    "BalanceOut",
    "Body",
    "BudgetIn",
    "BudgetOut",
    "ChargeOut",
    "CouponIn",
    "CreditsText",
    "DeploymentActionIn",
    "DeploymentIn",
    "DeploymentList",
    "DeploymentOut",
    "Draw",
    "Entry",
    "EntryPage",
    "EstimateIn",
    "EstimateOut",
    "ExplainOut",
    "GrantIn",
    "GrantOut",
    "IdempotencyKey",
    "LimitIn",
    "LimitOut",
    "MeOut",
    "NotificationOut",
    "NotificationPage",
    "Out",
    "PackList",
    "PackOut",
    "PauseIn",
    "PaymentRequiredProblem",
    "PriceLineOut",
    "Problem",
    "Quantities",
    "Quantity",
    "RatesOut",
    "RefillRequestOut",
    "ReleaseOut",
    "ReservationIn",
    "ReservationOut",
    "SettleIn",
    "SettleOut",
    "SourceAmounts",
    "Ucr",
    "UsageBatchIn",
    "UsageBatchOut",
    "UsageIn",
    "UsageResult",
    "WebhookEndpointIn",
    "WebhookEndpointList",
    "WebhookEndpointOut",
    "WebhookEndpointPatch",
    "WriteBody",
    "credits",
    "examples",
    "pick_money",
    "problem_doc",
    "whole_credits",
]
