"""The rate card: what things cost, versioned, and the one pricing function.

A rate card is a TOML file the operator edits (see ``ledger/data/rates.toml``). Loading a new
version never rewrites history: every usage event records the version it was priced with.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from ledger.errors import InvalidQuantity, RateCardError, UnknownOperation, UnknownPack, UnknownPlan
from ledger.money import MAX_QUANTITY, MAX_UCR, ceil_ucr, credits_to_exact_ucr

Slug = str


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _exact_credits(value: object) -> object:
    """Credits in a rate card are exact: a TOML string or integer, never a (rounded) float."""  # float-ok
    if isinstance(value, bool | float):  # float-ok: refusing floats
        raise ValueError("write credit amounts as strings (e.g. \"0.15\"): a float is not exact")  # float-ok
    return value


#: A credit amount from the rate card: a decimal string or an integer, never a float.  # float-ok
Credits = Annotated[Decimal, BeforeValidator(_exact_credits)]


class Rate(_Frozen):
    """``credits`` for every ``per`` units of one quantity dimension."""

    credits: Credits = Field(ge=0)
    per: StrictInt = Field(default=1, gt=0)


#: The quantity dimensions a model is priced by.
TOKEN_DIMENSIONS = frozenset({"input_tokens", "output_tokens"})


class Operation(_Frozen):
    slug: Slug
    description: str = ""
    kind: Literal["usage", "instance"] = "usage"
    #: The dimension a bare ``quantity`` stands for.
    unit: str
    rates: dict[str, Rate]
    #: Session minimum in credits: a charge is never less than this.
    minimum: Credits = Field(default=Decimal(0), ge=0)
    #: The integration it belongs to in usage reports (``ai``, ``email``, ``sms``, ``voice``,
    #: ``training``, ``image``, ``compute`` ...); absent: ``integration_of`` derives it.
    integration: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,31}$")
    #: Whether it is a model (analytics' cost by model, cheaper-model suggestions); absent: priced by tokens.
    model: bool | None = None

    @property
    def integration_type(self) -> str:
        return integration_of(self)

    @property
    def is_model(self) -> bool:
        return self.model if self.model is not None else bool(TOKEN_DIMENSIONS & self.rates.keys())

    @model_validator(mode="after")
    def _unit_is_priced(self) -> Operation:
        if self.unit not in self.rates:
            raise ValueError(f"operation {self.slug!r}: unit {self.unit!r} has no rate")
        return self


def integration_of(op: Operation) -> str:
    """The one rule naming an operation's integration: the card's ``integration`` when it gives one;
    else ``compute`` for an instance type, ``ai`` for anything priced by tokens, and otherwise the
    slug's first word (``voice_minute`` -> ``voice``, ``image_generate`` -> ``image``)."""
    if op.integration is not None:
        return op.integration
    if op.kind == "instance":
        return "compute"
    if TOKEN_DIMENSIONS & op.rates.keys():
        return "ai"
    return slug_integration(op.slug)


def slug_integration(slug: str) -> str:
    """The last step of ``integration_of`` alone: an operation no card describes (now) by its slug's first word."""
    return re.split(r"[_\-]", slug, maxsplit=1)[0].lower() or "other"


class Pack(_Frozen):
    id: str
    credits: Credits = Field(gt=0)
    bonus: Credits = Field(default=Decimal(0), ge=0)
    price_cents: StrictInt = Field(gt=0)


class CustomAmount(_Frozen):
    min_cents: int = Field(default=100, gt=0)
    max_cents: int = Field(default=1_000_000_00, gt=0)
    credits_per_dollar: Credits = Field(gt=0)


class Plan(_Frozen):
    id: str
    name: str
    price_cents: int = Field(ge=0)
    monthly_credits: Credits = Field(ge=0)
    signup_credits: Credits = Field(default=Decimal(0), ge=0)
    signup_credits_expire_days: int | None = Field(default=None, gt=0)
    rate_limit_per_minute: int = Field(gt=0)
    concurrent_runs: int = Field(gt=0)


class BudgetDefaults(_Frozen):
    warn_pct: int = Field(default=80, gt=0, le=100)
    critical_pct: int = Field(default=95, gt=0, le=100)
    low_balance: Credits = Field(default=Decimal(5), ge=0)


def coupon_code(code: str) -> str:
    """The form coupon codes are compared in: ``welcome10``, `` WELCOME10 `` and ``WELCOME10`` are one code.

    The one rule for the rate card (two codes on a card may not share it) and for redemption
    (lookup, and "already redeemed by this account"). Only a comparison key: events, redemptions
    and the global stock keep the card's own spelling.
    """
    return unicodedata.normalize("NFKC", code).strip().casefold()


class Coupon(_Frozen):
    code: str
    credits: Credits = Field(gt=0)
    expires_at: datetime | None = None
    max_redemptions: int | None = Field(default=None, gt=0)
    #: The granted promotion credits expire this many days after redemption.
    grant_expires_days: int | None = Field(default=None, gt=0)

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("coupon expires_at needs a timezone (e.g. 2027-01-01T00:00:00Z)")
        return v


class RateCard(_Frozen):
    version: str = Field(min_length=1, max_length=64)
    currency: str = "USD"
    upgrade_url: str
    default_plan: str
    operations: dict[Slug, Operation]
    packs: dict[str, Pack]
    custom_amount: CustomAmount
    plans: dict[str, Plan]
    budget_defaults: BudgetDefaults = BudgetDefaults()
    coupons: dict[str, Coupon] = {}
    #: Purchased credits may be refunded (taken back) this many days after the purchase, unless an
    #: operator forces the refund.
    refund_window_days: StrictInt = Field(default=30, ge=0, le=3650)
    #: The card's coupons by ``coupon_code``, and the ``coupons`` it was built from.
    _coupon_index: tuple[object, dict[str, Coupon]] = PrivateAttr(default=(None, {}))
    #: Prices already computed with this card, by (slug, *sorted quantities).
    _prices: dict[tuple[object, ...], tuple[Operation, Price]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> RateCard:
        for table in (self.operations, self.packs, self.plans):
            for key, item in table.items():
                ident = getattr(item, "slug", None) or getattr(item, "id", None)
                if ident != key:
                    raise ValueError(f"entry {key!r} names itself {ident!r}")
        by_code: dict[str, Coupon] = {}
        for code, coupon in self.coupons.items():
            if coupon.code != code:
                raise ValueError(f"coupon {code!r} names itself {coupon.code!r}")
            key = coupon_code(code)
            if not key:
                raise ValueError(f"coupon {code!r} has an empty code")
            if key in by_code:
                raise ValueError(f"coupons {by_code[key].code!r} and {code!r} are one code (case is ignored)")
            by_code[key] = coupon
        if self.default_plan not in self.plans:
            raise ValueError(f"default_plan {self.default_plan!r} is not a plan")
        return self

    def operation(self, slug: str) -> Operation:
        """The operation for ``slug``, or ``UnknownOperation`` (422)."""
        try:
            return self.operations[slug]
        except KeyError:
            raise UnknownOperation(f"unknown operation {slug!r}") from None

    def coupon(self, code: str) -> Coupon | None:
        """The coupon ``code`` names, whatever its case; None when the card has no such code."""
        built_from, index = self._coupon_index
        if built_from is not self.coupons:  # built on first use; ``model_copy(update=...)`` replaces it
            index = {coupon_code(k): c for k, c in self.coupons.items()}
            self._coupon_index = (self.coupons, index)
        return index.get(coupon_code(code))

    def pack(self, pack_id: str) -> Pack:
        try:
            return self.packs[pack_id]
        except KeyError:
            raise UnknownPack(f"unknown credit pack {pack_id!r}") from None

    def plan(self, plan_id: str) -> Plan:
        try:
            return self.plans[plan_id]
        except KeyError:
            raise UnknownPlan(f"unknown plan {plan_id!r}") from None


@dataclass(frozen=True, slots=True)
class PriceLine:
    dimension: str
    quantity: int
    credits: Decimal
    per: int
    exact_ucr: Fraction


@dataclass(frozen=True, slots=True)
class Price:
    """What one use of an operation costs, with everything needed to explain it."""

    operation: Slug
    rate_card_version: str
    lines: tuple[PriceLine, ...]
    exact_ucr: Fraction
    minimum_ucr: int
    amount_ucr: int


@lru_cache(maxsize=4096)
def _exact_rate(credits: Decimal, per: int) -> Fraction:
    """µcr per unit, exactly; cached because every priced command needs it."""
    return credits_to_exact_ucr(credits) / per


def normalize_quantities(
    op: Operation, quantity: int | None, quantities: Mapping[str, int] | None
) -> dict[str, int]:
    """Validate a ``quantity`` or ``quantities`` request against ``op``'s priced dimensions."""
    if (quantity is None) == (quantities is None):
        raise InvalidQuantity("give exactly one of quantity or quantities")
    given = {op.unit: quantity} if quantity is not None else dict(quantities or {})
    if not given:
        raise InvalidQuantity("quantities is empty")
    for dim, q in given.items():
        if dim not in op.rates:
            raise InvalidQuantity(
                f"operation {op.slug!r} has no dimension {dim!r} (has: {', '.join(sorted(op.rates))})"
            )
        if isinstance(q, bool) or not isinstance(q, int):
            raise InvalidQuantity(f"{dim} must be an integer, got {q!r}")
        if q < 0 or q > MAX_QUANTITY:
            raise InvalidQuantity(f"{dim} must be between 0 and {MAX_QUANTITY}, got {q}")
    # One dimension may be zero (a completion that produced no output tokens still read its
    # input); usage that is zero in every dimension is not usage.
    if not any(given.values()):
        if len(given) == 1:
            ((dim, q),) = given.items()
            raise InvalidQuantity(f"{dim} must be between 1 and {MAX_QUANTITY}, got {q}")
        raise InvalidQuantity("at least one quantity must be positive")
    return given


def price(card: RateCard, slug: str, quantities: Mapping[str, int]) -> Price:
    """Exact cost of ``quantities`` of ``slug``: summed exactly, rounded up once, floored at the minimum."""
    # Memoised per card: usage repeats the same few (operation, quantities) over and over, and a
    # ``Price`` is immutable, so sharing one is safe. A hit must come from this very (frozen)
    # operation object and this card version: ``model_copy`` shares the cache between cards.
    op = card.operation(slug)
    key = (slug, *sorted(quantities.items()))
    hit = card._prices.get(key)
    if hit is not None and hit[0] is op and hit[1].rate_card_version == card.version:
        return hit[1]
    p = _price(card, slug, quantities)
    if len(card._prices) >= _PRICE_CACHE:
        card._prices.clear()
    card._prices[key] = (op, p)
    return p


_PRICE_CACHE = 10_000


def _price(card: RateCard, slug: str, quantities: Mapping[str, int]) -> Price:
    op = card.operation(slug)
    lines = []
    total = Fraction(0)
    for dim, q in sorted(quantities.items()):
        rate = op.rates[dim]
        exact = _exact_rate(rate.credits, rate.per) * q
        total += exact
        lines.append(PriceLine(dimension=dim, quantity=q, credits=rate.credits, per=rate.per, exact_ucr=exact))
    minimum = ceil_ucr(_exact_rate(op.minimum, 1))
    amount = max(ceil_ucr(total), minimum)
    if amount > MAX_UCR:
        raise InvalidQuantity(f"cost of {slug!r} is out of range")
    return Price(
        operation=slug,
        rate_card_version=card.version,
        lines=tuple(lines),
        exact_ucr=total,
        minimum_ucr=minimum,
        amount_ucr=amount,
    )


def _from_toml_dict(raw: dict[str, object]) -> RateCard:
    """Fill the ids from the TOML table keys, then validate."""
    data = dict(raw)
    for table, key in (("operations", "slug"), ("packs", "id"), ("plans", "id"), ("coupons", "code")):
        items = data.get(table)
        if isinstance(items, dict):
            data[table] = {k: {key: k, **v} if isinstance(v, dict) else v for k, v in items.items()}
    try:
        return RateCard.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RateCardError(f"{where}: {first['msg']}") from None


def parse_rate_card(text: str) -> RateCard:
    """Parse and validate a rate card from TOML text; ``RateCardError`` with the first problem."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RateCardError(f"not valid TOML: {exc}") from None
    return _from_toml_dict(raw)


def load_rate_card_file(path: Path) -> RateCard:
    return parse_rate_card(path.read_text(encoding="utf-8"))


def sample_rate_card_text() -> str:
    """The sample rate card shipped with the project (covers every seed product)."""
    return resources.files("ledger").joinpath("data/rates.toml").read_text(encoding="utf-8")


def sample_rate_card() -> RateCard:
    return parse_rate_card(sample_rate_card_text())
