"""The catalogue: credit packs and the rate card."""

from __future__ import annotations

from typing import Any

from ledger.api.schemas.base import Out


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
