"""The idempotency rules on their own (``ledger.idempotency``), without a database: the key's one
spelling, the request's key from its header and body, the fingerprint stored keys depend on, and
the replay-or-conflict decision. ``test_idempotency.py`` holds them end to end."""

from __future__ import annotations

import pytest

from ledger import commands as c
from ledger.errors import IdempotencyConflict, InvalidRequest, MalformedRequest
from ledger.idempotency import (
    MAX_KEY,
    KeyBook,
    ReplayInBatch,
    ReplayStored,
    StoredKey,
    fingerprint,
    normal_key,
    request_key,
)


def test_a_key_is_stripped_of_spaces_and_tabs_and_nfc_normalised() -> None:
    assert normal_key(" \tcafe\u0301 \t") == "caf\u00e9"
    with pytest.raises(ValueError, match="blank"):
        normal_key(" \t ")
    with pytest.raises(ValueError, match="at most"):
        normal_key("k" * (MAX_KEY + 1))
    assert normal_key("k" * MAX_KEY) == "k" * MAX_KEY


def test_a_command_normalises_its_body_key_by_the_same_rule() -> None:
    cmd = c.Charge(account_id="a", operation="email", quantity=1, idempotency_key=" cafe\u0301")
    assert cmd.idempotency_key == "caf\u00e9"


def test_the_request_key_comes_from_the_header_or_the_body_and_both_must_agree() -> None:
    as_latin1 = "caf\u00e9".encode().decode("latin-1")  # how Starlette hands over a UTF-8 header
    assert request_key(as_latin1, None) == "caf\u00e9"
    assert request_key(None, "cafe\u0301") == "caf\u00e9"
    assert request_key(as_latin1, "cafe\u0301") == "caf\u00e9"
    assert request_key(None, None) is None
    with pytest.raises(InvalidRequest, match="differ"):
        request_key("a", "b")
    with pytest.raises(InvalidRequest, match="blank"):
        request_key("  ", None)
    with pytest.raises(MalformedRequest):
        request_key("\xff", None)


def test_the_fingerprint_is_the_one_every_stored_key_was_written_with() -> None:
    """Stored keys hold these bytes: a change here would turn every retry into a 409."""
    charge = c.Charge(account_id="acct-1", operation="email", quantity=1000, idempotency_key="k")
    assert fingerprint(charge).hex() == "da658becbc6e8a90db5db045772644ac37e71cca097ffcca399045a79667bdaf"
    grant = c.GrantCredits(account_id="acct-1", amount_ucr=5, source="promotion", reason="r")
    assert grant.fingerprint().hex() == "2cba6a37e742433c5a0876ee39a872b8accc45ffc2749cf97b6781734933a241"
    # Without its key, and with the command's type.
    assert fingerprint(charge.model_copy(update={"idempotency_key": "other"})) == fingerprint(charge)
    assert fingerprint(c.Meter(account_id="acct-1", operation="email", quantity=1000)) != fingerprint(charge)


def test_a_key_book_replays_a_same_request_and_refuses_another() -> None:
    book = KeyBook({("a", "old"): StoredKey(b"fp", 3, 4)})
    assert book.check("a", "old", b"fp") == ReplayStored("a", 3, 4)
    assert isinstance(book.check("a", "old", b"other"), IdempotencyConflict)
    assert book.check("b", "old", b"fp") is None  # a key is per account

    assert book.check("a", "new", b"fp") is None
    book.record("a", "new", b"fp", 2, 5, 6)
    assert book.check("a", "new", b"fp") == ReplayInBatch(2)
    assert isinstance(book.check("a", "new", b"other"), IdempotencyConflict)
    assert book.new == [("a", "new", b"fp", 5, 6)]


def test_a_purchase_keeps_its_fingerprint_until_a_field_added_later_is_set() -> None:
    """``RecordPurchase`` gained Stripe's charge, invoice and receipt links after keys were stored:
    unset, they leave the bytes a stored purchase key was written with."""
    old = c.RecordPurchase(account_id="acct-1", kind="pack", pack_id="starter", cents_paid=500,
                           stripe_checkout_session="cs_1")
    assert old.fingerprint().hex() == "b8f9966ce07aa3b60817c8e9146140dff7fd0a82ac0e747bcd1322984a99951d"
    assert old.model_copy(update={"receipt_url": "https://pay.example/r/1"}).fingerprint() != old.fingerprint()
