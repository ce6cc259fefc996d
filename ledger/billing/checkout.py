"""Buying credits through Stripe Checkout: price what was asked from the rate card, then open a
Checkout Session in payment mode that carries everything the webhook needs to credit it.

Pricing is pure and runs before Stripe is called: an unknown pack or an amount outside the card's
custom-amount rule is a 422 and no session is created. The session's metadata carries the account,
the pack, the credits, the bonus, the price and the end-to-end key; the webhook builds the purchase
from the session alone (``ledger.billing.stripe_events``). A retried API call with the same
``Idempotency-Key`` sends Stripe the same idempotency key, so Stripe returns the same session.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from typing import Any

from ledger.billing.gateway import StripeGateway
from ledger.errors import InvalidRequest, PurchaseRejected
from ledger.money import credits_to_exact_ucr, floor_ucr, format_cents, format_credits
from ledger.rates import RateCard

#: Metadata version: what the webhook expects to find on a session the ledger opened.
SOURCE = "credit-ledger"


@dataclass(frozen=True, slots=True)
class Priced:
    """What a checkout sells: a pack or a custom amount, its credits (and bonus) and its price."""

    kind: str  # "pack" | "custom"
    pack_id: str | None
    credits_ucr: int
    bonus_ucr: int
    price_cents: int
    currency: str

    @property
    def label(self) -> str:
        bonus = f" + {format_credits(self.bonus_ucr)} bonus" if self.bonus_ucr else ""
        return f"{format_credits(self.credits_ucr).rstrip('0').rstrip('.')} credits{bonus}"


def price_pack(card: RateCard, pack_id: str) -> Priced:
    """A pack at its price on the card; ``UnknownPack`` (422) if the card has none by that id."""
    pack = card.pack(pack_id)
    return Priced("pack", pack.id, floor_ucr(credits_to_exact_ucr(pack.credits)),
                  floor_ucr(credits_to_exact_ucr(pack.bonus)), pack.price_cents, card.currency)


def price_custom(card: RateCard, credits_ucr: int) -> Priced:
    """``credits_ucr`` bought at the card's custom rate: the fewest cents that buy at least that
    many credits, which must buy exactly that many (else the amount is not one the card sells) and
    lie within the rule's bounds."""
    rule = card.custom_amount
    per_dollar_ucr = credits_to_exact_ucr(rule.credits_per_dollar)
    cents = ceil(credits_ucr * 100 / per_dollar_ucr)
    # The domain credits floor(rate x cents): the session must promise exactly that.
    if floor_ucr(per_dollar_ucr * cents / 100) != credits_ucr:
        step = per_dollar_ucr / 100
        raise PurchaseRejected(f"{format_credits(credits_ucr)} credits is not a whole number of cents at"
                               f" {rule.credits_per_dollar} credits per dollar: buy a multiple of"
                               f" {format_credits(floor_ucr(step))} credits", "not_whole_cents")
    if cents < rule.min_cents:
        raise PurchaseRejected(f"{format_credits(credits_ucr)} credits cost {format_cents(cents)}; the minimum is"
                               f" {format_cents(rule.min_cents)}", "below_minimum")
    if cents > rule.max_cents:
        raise PurchaseRejected(f"{format_credits(credits_ucr)} credits cost {format_cents(cents)}; the maximum is"
                               f" {format_cents(rule.max_cents)}", "above_maximum")
    return Priced("custom", None, credits_ucr, 0, cents, card.currency)


def price(card: RateCard, pack_id: str | None, credits_ucr: int | None) -> Priced:
    """A pack or a custom amount, exactly one of them."""
    if (pack_id is None) == (credits_ucr is None):
        raise InvalidRequest("give exactly one of pack or credits_amount")
    return price_pack(card, pack_id) if pack_id is not None else price_custom(card, credits_ucr or 0)


def stripe_idempotency_key(account_id: str, request_key: str) -> str:
    """Stripe's idempotency key for the create call of the API call keyed ``request_key``."""
    return f"credit-ledger:checkout:{account_id}:{request_key}"


def metadata(account_id: str, priced: Priced, request_key: str | None, rate_card_version: str) -> dict[str, str]:
    """What the session carries for the webhook (Stripe metadata values are strings)."""
    return {
        "source": SOURCE,
        "account": account_id,
        "kind": priced.kind,
        "pack": priced.pack_id or "",
        "credits_ucr": str(priced.credits_ucr),
        "bonus_ucr": str(priced.bonus_ucr),
        "price_cents": str(priced.price_cents),
        "rate_card_version": rate_card_version,
        "key": request_key or "",
    }


def session_params(account_id: str, priced: Priced, *, success_url: str, cancel_url: str,
                   request_key: str | None, rate_card_version: str, customer: str | None) -> dict[str, Any]:
    """The Checkout Session to create, in payment mode, for one priced line."""
    meta = metadata(account_id, priced, request_key, rate_card_version)
    params: dict[str, Any] = {
        "mode": "payment",
        "success_url": success_url,
        "cancel_url": cancel_url,
        "client_reference_id": account_id,
        "line_items": [{"quantity": 1, "price_data": {
            "currency": priced.currency.lower(), "unit_amount": priced.price_cents,
            "product_data": {"name": priced.label}}}],
        "metadata": meta,
        # Refunds and disputes name the PaymentIntent: it carries the same facts.
        "payment_intent_data": {"metadata": meta},
    }
    if customer:
        params["customer"] = customer
    else:
        params["customer_creation"] = "always"
    return params


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    session_id: str
    checkout_url: str
    priced: Priced


async def open_checkout(gateway: StripeGateway, card: RateCard, account_id: str, *, pack_id: str | None,
                        credits_ucr: int | None, success_url: str, cancel_url: str, request_key: str | None,
                        customer: str | None) -> CheckoutSession:
    """Price first (a 422 calls no one), then create the session with Stripe's idempotency key."""
    priced = price(card, pack_id, credits_ucr)
    params = session_params(account_id, priced, success_url=success_url, cancel_url=cancel_url,
                            request_key=request_key, rate_card_version=card.version, customer=customer)
    session = await gateway.create_checkout_session(
        params, stripe_idempotency_key(account_id, request_key) if request_key else None)
    return CheckoutSession(session["id"], session["url"], priced)
