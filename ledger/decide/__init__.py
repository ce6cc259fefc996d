"""``decide(state, command, ctx) -> (events, state after)``: every business rule of the write side, pure.

Nothing here touches a database or a clock: time, ids, the rate card and the global coupon
stock come in through ``Context``. A refused command raises a ``LedgerError`` and yields
nothing; the store never records a partial decision.

One module per part of the domain, each deciding its own commands (its ``HANDLERS``):
``spending`` (usage, the gates and the spend range), ``credits`` (grants, allowance, coupons,
purchases, refunds), ``reservations``, ``deployments``, ``disputes`` (of purchases),
``auto_refill``, ``plans`` (paid through Stripe) and ``account`` (opening, plan, budget, limits,
API keys, alerts); ``context`` holds ``Context`` and the event ``Builder``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger import commands as c
from ledger.decide import account, auto_refill, credits, deployments, disputes, plans, reservations, spending
from ledger.decide.context import Builder, Context
from ledger.decide.spending import MAX_BACKDATE, check_spend, price_usage
from ledger.errors import InvalidRequest, InvalidState, UnknownAccount
from ledger.events import Event
from ledger.state import AccountState, apply

__all__ = ["MAX_BACKDATE", "Context", "check_spend", "decide", "fold", "price_usage"]

_HANDLERS: dict[type[c.Command], Callable[[Builder, Any], None]] = {
    **account.HANDLERS, **credits.HANDLERS, **spending.HANDLERS, **reservations.HANDLERS, **deployments.HANDLERS,
    **disputes.HANDLERS, **auto_refill.HANDLERS, **plans.HANDLERS,
}


def _require_account(state: AccountState) -> None:
    if not state.exists:
        raise UnknownAccount(state.account_id)
    if state.status == "closed":
        raise InvalidState(f"account {state.account_id!r} is closed")


def decide(state: AccountState, command: c.Command, ctx: Context) -> tuple[list[Event], AccountState]:
    """The events ``command`` produces on ``state`` and the state after them (folded once as they
    are emitted), or a ``LedgerError`` if it is refused.

    Deciding is not submitting: ``Ledger.execute`` submits a command to be decided and recorded.
    """
    b = Builder(state, command, ctx)
    if type(command) is c.OpenAccount:
        account.open_account(b, command)
    else:
        _require_account(state)
        handler = _HANDLERS.get(type(command))
        if handler is None:
            raise InvalidRequest(f"unknown command {type(command).__name__}")
        handler(b, command)
    return b.events, b.state


def fold(state: AccountState, events: list[Event]) -> AccountState:
    """Apply ``events`` in order."""
    for e in events:
        state = apply(state, e)
    return state
