"""Error documents (RFC 9457 problems) and the error answers each route declares."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


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
