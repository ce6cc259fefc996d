"""Controls: the monthly budget and spend limits."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictBool, StrictInt

from ledger.api.schemas.base import Out, WriteBody, examples
from ledger.api.schemas.fields import CreditsText, Ucr


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
