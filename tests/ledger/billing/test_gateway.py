"""The Stripe gateway's idempotency header: the ledger's keys carry the caller's (any Unicode), the
header must be printable ASCII of at most 255 characters, and one key must always be one header."""

from __future__ import annotations

from ledger.billing.gateway import header_key


def test_a_plain_key_is_sent_as_it_is_and_any_other_as_one_digest() -> None:
    assert header_key("credit-ledger:checkout:acme:buy-1") == "credit-ledger:checkout:acme:buy-1"
    for key in ("credit-ledger:checkout:acme:ключ ✓", "with space", "tab\\there".replace("\\t", "\t"), "x" * 256):
        sent = header_key(key)
        assert sent == header_key(key) and sent.startswith("credit-ledger:sha256:")
        assert len(sent) <= 255 and all(" " < ch <= "~" for ch in sent)
    assert header_key("a b") != header_key("a  b")

