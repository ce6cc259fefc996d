"""The field types every body shares: credits, µcr amounts, quantities, idempotency keys.

Money goes out twice, ``<name>_ucr`` (integer µcr) and ``<name>`` (decimal string of credits);
requests may give either (``pick_money``). Integers are strict and never rounded: where money or a
quantity is expected, a JSON float is a 422."""  # float-ok: floats are refused

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, StrictInt, WithJsonSchema

from ledger.commands import MAX_KEY, as_normal_key
from ledger.errors import InvalidRequest
from ledger.money import MAX_UCR, format_credits, parse_credits

_CREDITS_PATTERN = r"^\s*-?[0-9]+(\.[0-9]{1,6})?\s*$"


def whole_credits(value: object) -> object:
    """A JSON integer is a whole number of credits (``10`` -> ``"10"``); a fractional number or a boolean is refused."""
    if isinstance(value, bool | float):  # float-ok: refused, never converted
        raise ValueError('credits are a decimal string ("12.5") or a whole number (12),'
                         ' not a JSON float or boolean')  # float-ok: the refusal's message
    return str(value) if isinstance(value, int) else value


#: Credits: a decimal string with at most six places (``"12.5"``, ``"0.000150"``), or a JSON integer
#: of whole credits (``10``), wherever a request takes credits.
CreditsText = Annotated[str, BeforeValidator(whole_credits), Field(max_length=40, pattern=_CREDITS_PATTERN),
                        WithJsonSchema({"anyOf": [{"type": "string", "maxLength": 40, "pattern": _CREDITS_PATTERN},
                                                  {"type": "integer"}], "examples": ["12.500000", 12]})]
Ucr = Annotated[StrictInt, Field(gt=0, le=MAX_UCR, examples=[12_500_000])]
Quantity = Annotated[StrictInt, Field(examples=[1200])]
Quantities = Annotated[dict[Annotated[str, Field(max_length=100)], Quantity],
                       Field(max_length=20, examples=[{"input_tokens": 1200, "output_tokens": 350}])]
#: Normalised by the one rule (``commands.normal_key``), as the ``Idempotency-Key`` header is.
IdempotencyKey = Annotated[str, BeforeValidator(as_normal_key),
                           Field(min_length=1, max_length=MAX_KEY, examples=["run-42-step-3"])]


def credits(ucr: int) -> str:
    return format_credits(ucr)


def pick_money(name: str, text: str | None, ucr: int | None, *, required: bool = True) -> int | None:
    """The µcr a request gave as ``name`` (decimal string) or ``name_ucr`` (integer), never both."""
    if text is not None and ucr is not None:
        raise InvalidRequest(f"give one of {name} or {name}_ucr, not both")
    if ucr is not None:
        return ucr
    if text is not None:
        try:
            value = parse_credits(text)
        except ValueError as exc:
            raise InvalidRequest(f"{name}: {exc}") from None
        if value <= 0:
            raise InvalidRequest(f"{name} must be more than 0")
        return value
    if required:
        raise InvalidRequest(f"{name} (or {name}_ucr) is required")
    return None

#: A page Stripe sends the customer back to: http(s), printable ASCII (a client percent-encodes the
#: rest, as a browser does), so Stripe is never handed a URL it refuses.
Url = Annotated[str, Field(min_length=8, max_length=2000, pattern=r"^https?://[!-~]+$",
                           examples=["https://app.example.com/billing"])]
