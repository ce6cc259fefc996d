"""An operation's integration and model flag: given by the card, or derived by one rule."""

from __future__ import annotations

import pytest

from ledger.errors import RateCardError
from ledger.rates import Operation, RateCard, integration_of, parse_rate_card, sample_rate_card
from tests.cards import frozen_rate_card


def op(slug: str, **fields: object) -> Operation:
    rates = fields.pop("rates", {"messages": {"credits": "1"}})
    unit = next(iter(rates))  # type: ignore[call-overload]
    return Operation.model_validate({"slug": slug, "unit": unit, "rates": rates, **fields})


TOKENS = {"input_tokens": {"credits": "1", "per": 1000}, "output_tokens": {"credits": "2", "per": 1000}}


@pytest.mark.parametrize(("operation", "integration", "is_model"), [
    (op("gpt-9", rates=TOKENS), "ai", True),
    (op("gpu-xl", kind="instance", rates={"hours": {"credits": "3"}}), "compute", False),
    (op("voice_minute", rates={"seconds": {"credits": "1", "per": 60}}), "voice", False),
    (op("image_generate", rates={"images": {"credits": "1"}}), "image", False),
    (op("sms"), "sms", False),
    (op("whatsapp-message"), "whatsapp", False),
    # What the card says wins over the rule, both ways.
    (op("sms", integration="messaging"), "messaging", False),
    (op("embedder", rates=TOKENS, integration="search", model=False), "search", False),
    (op("image_generate", rates={"images": {"credits": "1"}}, model=True), "image", True),
])
def test_integration_and_model_from_the_card_or_the_rule(operation: Operation, integration: str,
                                                         is_model: bool) -> None:
    assert integration_of(operation) == operation.integration_type == integration
    assert operation.is_model is is_model


@pytest.mark.parametrize("card", [sample_rate_card(), frozen_rate_card()], ids=["sample", "tests"])
def test_the_shipped_cards_name_every_integration_as_the_rule_would(card: RateCard) -> None:
    found = {slug: (o.integration_type, o.is_model) for slug, o in card.operations.items()}
    assert found["gpt-4o"] == found["claude-haiku"] == ("ai", True)
    assert found["email"] == ("email", False) and found["sms"] == ("sms", False)
    assert found["voice_minute"] == found["voice_synthesis_1k_chars"] == ("voice", False)
    assert found["training_h100_per_minute"] == ("training", False)
    assert found["image_generate"] == ("image", False) and found["gpu-l"] == ("compute", False)
    # Every operation names it explicitly, and the explicit names agree with the rule.
    for o in card.operations.values():
        assert o.integration is not None
        assert o.integration == integration_of(o.model_copy(update={"integration": None}))


def test_an_integration_that_is_not_a_plain_name_is_refused() -> None:
    text = '''
version = "x"
upgrade_url = "https://example.com"
default_plan = "free"
[operations.email]
unit = "messages"
integration = "E-Mail!"
rates.messages = { credits = "1" }
[packs]
[custom_amount]
credits_per_dollar = "1"
[plans.free]
name = "Free"
price_cents = 0
monthly_credits = "0"
rate_limit_per_minute = 1
concurrent_runs = 1
'''
    with pytest.raises(RateCardError, match="integration"):
        parse_rate_card(text)
    assert parse_rate_card(text.replace('"E-Mail!"', '"email"')).operations["email"].integration == "email"
