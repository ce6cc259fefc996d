"""Reservations: holding credits for work in progress, settling what it used, releasing the rest."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

from ledger import commands as c
from ledger.decide.context import Builder
from ledger.decide.credits import expire_due
from ledger.decide.spending import check_spend, debit, price_usage
from ledger.errors import InvalidRequest, InvalidState, NotFound
from ledger.events import CreditsReleased, CreditsReserved


def _reserve(b: Builder, cmd: c.Reserve) -> None:
    card = b.ctx.card
    card.operation(cmd.operation)
    if cmd.amount_ucr is not None:
        if cmd.quantity is not None or cmd.quantities is not None:
            raise InvalidRequest("give an amount or a quantity, not both")
        held = cmd.amount_ucr
    else:
        held = price_usage(card, cmd.operation, cmd.quantity, cmd.quantities).amount_ucr
    expire_due(b)
    check_spend(b.state, held, cmd.attribution, b.ctx.now, card)
    b.emit(CreditsReserved, reservation_id=b.ctx.new_id(), operation=cmd.operation, held_ucr=held,
           expires_at=b.ctx.now + timedelta(seconds=cmd.ttl_s))


def _held(b: Builder, reservation_id: UUID) -> None:
    r = b.state.reservations.get(reservation_id)
    if r is None:
        raise NotFound(f"no reservation {reservation_id}")
    if r.status != "held":
        raise InvalidState(f"reservation {reservation_id} is already {r.status}")


def _settle(b: Builder, cmd: c.Settle) -> None:
    _held(b, cmd.reservation_id)
    r = b.state.reservations[cmd.reservation_id]
    p = price_usage(b.ctx.card, r.operation, cmd.quantity, cmd.quantities)
    expire_due(b)
    # The work happened: release the whole hold, then meter what was used (never refused).
    b.emit(CreditsReleased, reservation_id=r.reservation_id,
           released_ucr=max(r.held_ucr - p.amount_ucr, 0), reason="settled")
    debit(b, p, attribution=cmd.attribution, gated=False, reservation_id=r.reservation_id)


def _release(b: Builder, cmd: c.Release) -> None:
    _held(b, cmd.reservation_id)
    r = b.state.reservations[cmd.reservation_id]
    b.emit(CreditsReleased, reservation_id=r.reservation_id, released_ucr=r.held_ucr, reason="released")


def _expire_reservations(b: Builder, cmd: c.ExpireReservations) -> None:
    for r in sorted(b.state.reservations.values(), key=lambda r: (r.expires_at, str(r.reservation_id))):
        if r.status == "held" and r.expires_at <= b.ctx.now:
            b.emit(CreditsReleased, reservation_id=r.reservation_id, released_ucr=r.held_ucr,
                   reason="expired")


#: The commands decided here.
HANDLERS: dict[type[c.Command], Callable[[Builder, Any], None]] = {
    c.Reserve: _reserve,
    c.Settle: _settle,
    c.Release: _release,
    c.ExpireReservations: _expire_reservations,
}
