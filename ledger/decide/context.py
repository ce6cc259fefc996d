"""What a decision may know beyond the account (``Context``) and how it emits events (``Builder``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from ledger import commands as c
from ledger.errors import OutOfRange
from ledger.events import Event, EventBase
from ledger.money import MAX_UCR, format_credits
from ledger.rates import RateCard
from ledger.state import AccountState, apply

E = TypeVar("E", bound=EventBase)


@dataclass(frozen=True)
class Context:
    """What a decision may know beyond the account: now, the rate card, ids, global coupon stock."""

    now: datetime
    card: RateCard
    new_id: Callable[[], UUID]
    #: Redemptions left per coupon code (None: unlimited). Codes absent were not loaded.
    coupon_stock: Mapping[str, int | None] = field(default_factory=dict)


class Builder:
    """Emits events one at a time, folding each into the state so the next sees it."""

    def __init__(self, state: AccountState, command: c.Command, ctx: Context) -> None:
        self.state = state
        self.ctx = ctx
        self.key = command.idempotency_key
        self.events: list[Event] = []

    def emit(self, cls: type[E], *, amount_ucr: int = 0, occurred_at: datetime | None = None,
             **fields: Any) -> E:
        balance_after = self.state.balance_ucr + amount_ucr
        if abs(amount_ucr) > MAX_UCR or abs(balance_after) > MAX_UCR:
            # Refused here, as bad input, rather than by a BIGINT overflow in the database.
            raise OutOfRange(f"the balance would leave the range the ledger holds (±{format_credits(MAX_UCR)}"
                             " credits)")
        # Validated: pydantic's compiled validator is also faster than ``model_construct``'s
        # Python loop over the fields.
        event = cls.model_validate({
            "event_id": self.ctx.new_id(),
            "account_id": self.state.account_id,
            "occurred_at": occurred_at or self.ctx.now,
            "recorded_at": self.ctx.now,
            "idempotency_key": self.key,
            "amount_ucr": amount_ucr,
            "balance_after_ucr": balance_after,
            **fields,
        })
        self.events.append(event)  # type: ignore[arg-type]
        self.state = apply(self.state, event)  # type: ignore[arg-type]
        return event
