"""Stripe's test payment-method tokens and what paying with each one does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Outcome = Literal["succeed", "decline", "authenticate"]


@dataclass(frozen=True)
class TestCard:
    brand: str
    last4: str
    outcome: Outcome
    decline_code: str | None = None


#: Tokens the stand-in knows; using one makes a new ``pm_`` object with the card's details, as Stripe does.
TEST_CARDS: dict[str, TestCard] = {
    "pm_card_visa": TestCard("visa", "4242", "succeed"),
    "pm_card_mastercard": TestCard("mastercard", "4444", "succeed"),
    "pm_card_amex": TestCard("amex", "8431", "succeed"),
    "pm_card_chargeDeclined": TestCard("visa", "0002", "decline", "generic_decline"),
    "pm_card_visa_chargeDeclined": TestCard("visa", "0002", "decline", "generic_decline"),
    "pm_card_chargeDeclinedInsufficientFunds": TestCard("visa", "9995", "decline", "insufficient_funds"),
    "pm_card_visa_chargeDeclinedInsufficientFunds": TestCard("visa", "9995", "decline", "insufficient_funds"),
    "pm_card_authenticationRequired": TestCard("visa", "3184", "authenticate", "authentication_required"),
}

DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "authentication_required": "Your card was declined. This transaction requires authentication.",
}
