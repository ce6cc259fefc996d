"""Request and response bodies of the HTTP API (API.md), as pydantic models for OpenAPI.

Money goes out twice, ``<name>_ucr`` (integer µcr) and ``<name>`` (decimal string of credits);
requests may give either. Integers are strict and never rounded: where money or a quantity is
expected, a JSON float is a 422."""  # float-ok: floats are refused

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    WithJsonSchema,
)

from ledger.commands import MAX_KEY, as_normal_key
from ledger.errors import InvalidRequest
from ledger.money import MAX_UCR, format_credits, parse_credits

_CREDITS_PATTERN = r"^\s*-?[0-9]+(\.[0-9]{1,6})?\s*$"


def whole_credits(value: object) -> object:
    """A JSON integer is a whole number of credits (``10`` -> ``"10"``); a fractional number or a boolean is refused."""
    if isinstance(value, bool | float):  # float-ok: refused, never converted
        raise ValueError('credits are a decimal string ("12.5") or a whole number (12),'
                         ' not a JSON float or boolean')  # float-ok: the refusal's message
    return str(value) if isinstance(value, int) else value


#: Credits: a decimal string with at most six places (``"12.5"``, ``"0.000150"``), or a JSON integer
#: of whole credits (``10``), wherever a request takes credits.
CreditsText = Annotated[str, BeforeValidator(whole_credits), Field(max_length=40, pattern=_CREDITS_PATTERN),
                        WithJsonSchema({"anyOf": [{"type": "string", "maxLength": 40, "pattern": _CREDITS_PATTERN},
                                                  {"type": "integer"}], "examples": ["12.500000", 12]})]
Ucr = Annotated[StrictInt, Field(gt=0, le=MAX_UCR, examples=[12_500_000])]
Quantity = Annotated[StrictInt, Field(examples=[1200])]
Quantities = Annotated[dict[Annotated[str, Field(max_length=100)], Quantity],
                       Field(max_length=20, examples=[{"input_tokens": 1200, "output_tokens": 350}])]
#: Normalised by the one rule (``commands.normal_key``), as the ``Idempotency-Key`` header is.
IdempotencyKey = Annotated[str, BeforeValidator(as_normal_key),
                           Field(min_length=1, max_length=MAX_KEY, examples=["run-42-step-3"])]


def credits(ucr: int) -> str:
    return format_credits(ucr)


def pick_money(name: str, text: str | None, ucr: int | None, *, required: bool = True) -> int | None:
    """The µcr a request gave as ``name`` (decimal string) or ``name_ucr`` (integer), never both."""
    if text is not None and ucr is not None:
        raise InvalidRequest(f"give one of {name} or {name}_ucr, not both")
    if ucr is not None:
        return ucr
    if text is not None:
        try:
            value = parse_credits(text)
        except ValueError as exc:
            raise InvalidRequest(f"{name}: {exc}") from None
        if value <= 0:
            raise InvalidRequest(f"{name} must be more than 0")
        return value
    if required:
        raise InvalidRequest(f"{name} (or {name}_ucr) is required")
    return None


def examples(**example: Any) -> ConfigDict:
    """A request body's config: unknown fields refused, and one example for the OpenAPI document."""
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [example]})


class Body(BaseModel):
    """A request body: unknown fields are refused so a typo is a 422, not a silent default."""

    model_config = ConfigDict(extra="forbid")


class WriteBody(Body):
    #: Same as the ``Idempotency-Key`` header (which wins when both are given and agree).
    idempotency_key: IdempotencyKey | None = None


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Problem(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``); errors add their own fields."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str


class PaymentRequiredProblem(Problem):
    required: str
    required_ucr: int
    remaining: str
    remaining_ucr: int
    reason: Literal["insufficient_balance", "budget_hard_limit", "agent_limit", "member_limit"]
    upgrade_url: str


def problem_doc(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "model": model,
            "content": {"application/problem+json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}


#: Every /v1 route may answer these (FastAPI's own 422 shape is replaced by the problem document).
ERRORS: dict[int | str, dict[str, Any]] = {
    400: problem_doc(Problem, "The body could not be read (not UTF-8 or not JSON)."),
    401: problem_doc(Problem, "No key, or an unknown, malformed or revoked key."),
    403: problem_doc(Problem, "The key's role is too weak."),
    404: problem_doc(Problem, "Not found, or not this key's account."),
    409: problem_doc(Problem, "Conflict: an idempotency key reused with another body, or the state forbids it."),
    414: problem_doc(Problem, "The path and query are longer than 8,192 bytes."),
    415: problem_doc(Problem, "The body is not sent as `Content-Type: application/json`."),
    422: problem_doc(Problem, "Invalid request; nothing was recorded."),
    429: problem_doc(Problem, "Over the plan's rate limit; see Retry-After. Nothing was recorded."),
    500: problem_doc(Problem, "The command could not be recorded."),
    503: problem_doc(Problem, "The database is unreachable, or the outcome is unknown: retry (a write with the same"
                              " Idempotency-Key)."),
}
#: Gated routes also answer 402.
PAYMENT_REQUIRED: dict[int | str, dict[str, Any]] = {
    402: problem_doc(PaymentRequiredProblem, "The account may not spend this much; nothing was recorded."),
}


class AttributionIn(Body):
    member: Annotated[str, Field(max_length=200)] | None = None
    agent: Annotated[str, Field(max_length=200)] | None = None
    flow: Annotated[str, Field(max_length=200)] | None = None
    run: Annotated[str, Field(max_length=200)] | None = None
    node: Annotated[str, Field(max_length=200)] | None = None
    deployment: Annotated[str, Field(max_length=200)] | None = None
    execution: Annotated[str, Field(max_length=200)] | None = None


# ---- accounts and keys ---------------------------------------------------------------------

class AccountIn(WriteBody):
    id: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:@-]+$",
                             examples=["acme"])] | None = None
    name: Annotated[str, Field(min_length=1, max_length=200, examples=["Acme Inc."])]
    plan: Annotated[str, Field(max_length=100, examples=["pro"])] | None = None


class AccountOut(Out):
    id: str
    name: str
    plan: str
    status: Literal["active", "in_debt", "closed"]
    created_at: datetime
    #: e.g. ``budget``: its amounts in both forms, like every amount (``monthly_limit``, ``monthly_limit_ucr``).
    settings: dict[str, Any]


class ApiKeyIn(WriteBody):
    role: Literal["admin", "member", "read"]
    name: Annotated[str, Field(min_length=1, max_length=200, examples=["billing backend"])]


class ApiKeyOut(Out):
    id: str
    prefix: str
    role: str
    name: str
    created_at: datetime
    revoked_at: datetime | None = None
    #: The whole key: in the creating response only, never again (null on an idempotent replay).
    key: str | None = None


class ApiKeyList(Out):
    data: list[ApiKeyOut]


class MeOut(Out):
    key_id: str
    role: str
    account_id: str | None


# ---- balance and ledger --------------------------------------------------------------------

class Entry(Out):
    id: UUID
    version: int
    created_at: datetime
    occurred_at: datetime
    type: str
    operation: str | None
    amount: str
    amount_ucr: int
    balance_after: str
    balance_after_ucr: int
    attribution: dict[str, str]
    idempotency_key: str | None
    details: dict[str, Any]


class EntryPage(Out):
    data: list[Entry]
    has_more: bool
    next_cursor: str | None


class SourceAmounts(Out):
    allowance: str
    allowance_ucr: int
    purchase: str
    purchase_ucr: int
    promotion: str
    promotion_ucr: int
    refund: str
    refund_ucr: int


class BalanceOut(Out):
    account_id: str
    plan: str
    status: str
    balance: str
    balance_ucr: int
    available: str
    available_ucr: int
    reserved: str
    reserved_ucr: int
    debt: str
    debt_ucr: int
    by_source: SourceAmounts
    monthly_allowance: str
    monthly_allowance_ucr: int
    resets_at: datetime | None
    #: When the balance runs out at the last 7 days' burn rate; null when idle.
    runout_at: datetime | None
    version: int
    recent: list[Entry]


# ---- pricing, charging, metering -----------------------------------------------------------

class UsageIn(WriteBody):
    model_config = examples(
        operation="gpt-4o",
        quantities={"input_tokens": 1200, "output_tokens": 350},
        attribution={"agent": "support-bot", "run": "run-42"},
    )

    operation: Annotated[str, Field(min_length=1, max_length=100, examples=["gpt-4o"])]
    quantity: Quantity | None = None
    quantities: Quantities | None = None
    attribution: AttributionIn | None = None


class EstimateIn(Body):
    model_config = examples(operation="claude-haiku", quantities={"input_tokens": 8000, "output_tokens": 1000})

    operation: Annotated[str, Field(min_length=1, max_length=100, examples=["gpt-4o"])]
    quantity: Quantity | None = None
    quantities: Quantities | None = None
    attribution: AttributionIn | None = None


class PriceLineOut(Out):
    dimension: str
    quantity: int
    credits_per: str
    per: int
    exact_ucr: str


class EstimateOut(Out):
    operation: str
    quantities: dict[str, int]
    total: str
    total_ucr: int
    sufficient: bool
    remaining: str
    remaining_ucr: int
    reason: str | None
    rate_card_version: str
    lines: list[PriceLineOut]


class Draw(Out):
    grant_id: UUID
    source: str
    amount: str
    amount_ucr: int


class ChargeOut(Out):
    id: UUID
    operation: str
    quantities: dict[str, int]
    #: What was charged (a debit; the ledger entry shows it negative).
    amount: str
    amount_ucr: int
    balance_after: str
    balance_after_ucr: int
    rate_card_version: str
    grants: list[Draw]
    debt_added: str
    debt_added_ucr: int
    created_at: datetime


class UsageBatchIn(Body):
    model_config = examples(
        events=[
            {"account_id": "acme", "operation": "email", "quantity": 300, "idempotency_key": "mail-0001"},
            {"account_id": "acme", "operation": "voice_minute", "quantity": 95, "idempotency_key": "call-8812"},
        ],
    )

    #: Each item: ``{account_id, operation, quantity | quantities, attribution?, occurred_at?,
    #: idempotency_key}``. Items are checked one by one: a bad item rejects only itself.
    events: Annotated[list[Any], Field(min_length=1, max_length=1000)]


class UsageResult(Out):
    idempotency_key: str | None
    #: ``rejected``: never accepted as sent; ``failed``: not recorded now, retry with the same key.
    status: Literal["created", "replayed", "rejected", "failed"]
    id: UUID | None = None
    amount: str | None = None
    amount_ucr: int | None = None
    error: dict[str, Any] | None = None


class UsageBatchOut(Out):
    results: list[UsageResult]


class ReservationIn(WriteBody):
    model_config = examples(operation="training_h100_per_minute", quantity=120, ttl_s=10800)

    operation: Annotated[str, Field(min_length=1, max_length=100, examples=["training_h100_per_minute"])]
    quantity: Quantity | None = None
    quantities: Quantities | None = None
    amount: CreditsText | None = None
    amount_ucr: Ucr | None = None
    ttl_s: Annotated[StrictInt, Field(gt=0, le=30 * 24 * 3600)] | None = None
    attribution: AttributionIn | None = None


class ReservationOut(Out):
    id: UUID
    operation: str
    held: str
    held_ucr: int
    expires_at: datetime
    balance_after: str
    balance_after_ucr: int


class SettleIn(WriteBody):
    quantity: Quantity | None = None
    quantities: Quantities | None = None
    attribution: AttributionIn | None = None


class SettleOut(Out):
    reservation_id: UUID
    charge: ChargeOut
    released: str
    released_ucr: int


class ReleaseOut(Out):
    reservation_id: UUID
    released: str
    released_ucr: int
    balance_after: str
    balance_after_ucr: int


class ExplainOut(Out):
    entry: Entry
    operation: str | None
    rate_card_version: str | None
    rates: list[PriceLineOut]
    quantities: dict[str, int]
    exact_cost: str | None
    minimum: str | None
    minimum_ucr: int | None
    charged: str
    charged_ucr: int
    rounding: str
    grants: list[Draw]
    debt_added: str
    debt_added_ucr: int
    limits_checked: list[dict[str, Any]]
    gated: bool | None


# ---- buying and granting -------------------------------------------------------------------

class CouponIn(WriteBody):
    code: Annotated[str, Field(min_length=1, max_length=100, examples=["WELCOME10"])]


class GrantIn(WriteBody):
    model_config = examples(
        amount="2500",
        source="promotion",
        expires_at="2027-01-31T00:00:00Z",
        reason="support goodwill",
    )

    amount: CreditsText | None = None
    amount_ucr: Ucr | None = None
    source: Literal["promotion", "refund", "purchase", "allowance"] = "promotion"
    expires_at: AwareDatetime | None = None
    reason: Annotated[str, Field(min_length=1, max_length=500, examples=["support goodwill"])]


class GrantOut(Out):
    grant_id: UUID
    source: str
    amount: str
    amount_ucr: int
    expires_at: datetime | None
    balance_after: str
    balance_after_ucr: int
    code: str | None = None
    debt_settled: str
    debt_settled_ucr: int


# ---- deployments ---------------------------------------------------------------------------

class DeploymentIn(WriteBody):
    model_config = examples(deployment_id="llama-70b-prod", instance_type="gpu-m")

    deployment_id: Annotated[str, Field(min_length=1, max_length=200, examples=["dep-llama-1"])]
    instance_type: Annotated[str, Field(min_length=1, max_length=100, examples=["gpu-s"])]


class DeploymentActionIn(WriteBody):
    pass


class PauseIn(WriteBody):
    reason: Annotated[str, Field(min_length=1, max_length=200)] = "paused_by_user"


class DeploymentOut(Out):
    id: str
    instance_type: str
    status: str
    hourly: str
    hourly_ucr: int
    hours_charged: int
    credits: str
    credits_ucr: int
    paused_reason: str | None
    started_at: datetime


class DeploymentList(Out):
    data: list[DeploymentOut]


# ---- controls ------------------------------------------------------------------------------

class BudgetIn(WriteBody):
    model_config = examples(monthly_limit="5000", warn_pct=80, critical_pct=95, hard_stop=True)

    #: Null clears the budget.
    monthly_limit: CreditsText | None = None
    monthly_limit_ucr: Ucr | None = None
    warn_pct: Annotated[StrictInt, Field(gt=0, le=100)] = 80
    critical_pct: Annotated[StrictInt, Field(gt=0, le=100)] = 95
    hard_stop: StrictBool = False


class BudgetOut(Out):
    monthly_limit: str | None
    monthly_limit_ucr: int | None
    warn_pct: int
    critical_pct: int
    hard_stop: bool
    spent_this_month: str
    spent_this_month_ucr: int


class LimitIn(WriteBody):
    model_config = examples(per_run="200", per_day="2000", per_month="30000")

    per_run: CreditsText | None = None
    per_run_ucr: Ucr | None = None
    per_day: CreditsText | None = None
    per_day_ucr: Ucr | None = None
    per_month: CreditsText | None = None
    per_month_ucr: Ucr | None = None


class LimitOut(Out):
    scope: str
    key: str
    per_run: str | None
    per_run_ucr: int | None
    per_day: str | None
    per_day_ucr: int | None
    per_month: str | None
    per_month_ucr: int | None


# ---- catalogue -----------------------------------------------------------------------------

class PackOut(Out):
    id: str
    credits: str
    credits_ucr: int
    bonus: str
    bonus_ucr: int
    #: The price is money, not credits: in cents of ``currency`` and as a decimal string ("5.00").
    price_cents: int
    price: str
    currency: str


class PackList(Out):
    data: list[PackOut]
    rate_card_version: str


class RatesOut(Out):
    version: str
    card: dict[str, Any]


# ---- notifications and webhooks ------------------------------------------------------------

class NotificationOut(Out):
    id: UUID
    created_at: datetime
    kind: str
    level: str
    message: str
    scope: str
    subject: str
    period: str
    threshold_pct: int
    spent: str
    spent_ucr: int
    limit: str
    limit_ucr: int


class NotificationPage(Out):
    data: list[NotificationOut]
    has_more: bool
    next_cursor: str | None


class WebhookEndpointIn(WriteBody):
    model_config = examples(url="https://example.com/hooks/credits", events=["AlertRaised", "UsageMetered"])

    url: Annotated[str, Field(min_length=8, max_length=2000)]
    #: Event types to deliver (the ``type`` of the ledger's events); omitted: all of them.
    events: Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]], Field(max_length=50)] | None = None


class WebhookEndpointPatch(Body):
    model_config = examples(enabled=False)

    #: ``false``: no deliveries from now on (events meanwhile are not sent later); ``true``: resume.
    enabled: StrictBool


class WebhookEndpointOut(Out):
    id: str
    url: str
    events: list[str] | None
    #: ``enabled``, or ``disabled`` (by the account, or because the receiver answered 410 Gone).
    status: str
    enabled: bool
    created_at: datetime
    #: The signing secret (Standard Webhooks): in the creating response only.
    secret: str | None = None


class WebhookEndpointList(Out):
    data: list[WebhookEndpointOut]
