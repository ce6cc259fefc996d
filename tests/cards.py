"""The test suite's frozen rate card (``tests/data/rates.toml``).

Tests that work prices out by hand use this card, not the shipped sample, so they keep their
figures when the sample's prices change. Every test database is made with it loaded (see
``template_database`` in ``tests/conftest.py``). Named ``frozen_*`` rather than ``test_*`` so
pytest does not collect the helpers as tests where they are imported.
"""

from __future__ import annotations

from pathlib import Path

from ledger.rates import RateCard, parse_rate_card

FROZEN_CARD_PATH = Path(__file__).resolve().parent / "data" / "rates.toml"


def frozen_rate_card_text() -> str:
    return FROZEN_CARD_PATH.read_text(encoding="utf-8")


def frozen_rate_card() -> RateCard:
    return parse_rate_card(frozen_rate_card_text())
