"""The rate card and the credit packs (any valid key)."""

from __future__ import annotations

from fastapi import APIRouter

from ledger.api import render
from ledger.api import schemas as s
from ledger.api.body import JsonBodyRoute
from ledger.api.deps import RT, Reader

router = APIRouter(tags=["pricing"], responses=s.ERRORS, route_class=JsonBodyRoute)


@router.get("/v1/rates", response_model=s.RatesOut)
async def rates(rt: RT, who: Reader) -> s.RatesOut:
    """The current rate card (operations, packs, plans) and its version. Prices are decimal strings."""
    card = rt.ledger.card
    return s.RatesOut(version=card.version, card=card.model_dump(mode="json"))


@router.get("/v1/packs", response_model=s.PackList)
async def packs(rt: RT, who: Reader) -> s.PackList:
    """Credit packs on sale: credits and bonus credits (both forms), and the price, which is money:
    ``price_cents`` and ``price`` (e.g. "5.00") in ``currency``."""
    card = rt.ledger.card
    return s.PackList(rate_card_version=card.version, data=[render.pack(p, card.currency) for p in card.packs.values()])
