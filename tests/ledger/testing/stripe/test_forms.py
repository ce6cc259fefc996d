"""Stripe's bracketed form encoding, as the SDK sends it, decoded; unreadable input is a 400."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from stripe._encode import _api_encode

from ledger.testing.stripe import StripeError, forms


def test_what_the_sdk_encodes_decodes_to_the_same_params() -> None:
    params = {"mode": "payment", "metadata": {"account_id": "acct_1", "note": "a=b&c"},
              "line_items": [{"price_data": {"currency": "usd", "unit_amount": 500,
                                             "product_data": {"name": "1,000 credits"}}, "quantity": 2},
                             {"price": "price_1", "quantity": 1}],
              "expand": ["payment_intent", "line_items"], "confirm": True}
    decoded = forms.decode(urlencode(list(_api_encode(params))))
    assert decoded == {"mode": "payment", "metadata": {"account_id": "acct_1", "note": "a=b&c"},
                       "line_items": [{"price_data": {"currency": "usd", "unit_amount": "500",
                                                      "product_data": {"name": "1,000 credits"}}, "quantity": "2"},
                                      {"price": "price_1", "quantity": "1"}],
                       "expand": ["payment_intent", "line_items"], "confirm": "true"}


def test_unindexed_lists_and_more_than_ten_items_keep_their_order() -> None:
    assert forms.decode("expand[]=a&expand[]=b")["expand"] == ["a", "b"]
    body = "&".join(f"items[{i}]={i}" for i in range(12))
    assert forms.decode(body)["items"] == [str(i) for i in range(12)]


@pytest.mark.parametrize("body", ["a]=1", "metadata[k]=1&metadata=2", "metadata=2&metadata[k]=1", "0=x"])
def test_unreadable_keys_are_a_400(body: str) -> None:
    with pytest.raises(StripeError) as refused:
        forms.decode(body)
    assert refused.value.status == 400 and refused.value.body["type"] == "invalid_request_error"


def test_coercions_refuse_what_stripe_refuses() -> None:
    params = forms.decode("amount=12x&neg=-5&flag=yes&meta[k]=v")
    with pytest.raises(StripeError, match="Invalid integer"):
        forms.as_int(params, "amount")
    with pytest.raises(StripeError, match="greater than or equal to 1"):
        forms.as_int(params, "neg", minimum=1)
    with pytest.raises(StripeError, match="Invalid boolean"):
        forms.as_bool(params, "flag")
    with pytest.raises(StripeError) as missing:
        forms.as_str(params, "currency", required=True)
    assert missing.value.body["code"] == "parameter_missing" and missing.value.body["param"] == "currency"
    assert forms.metadata(params, "meta") == {"k": "v"}
