"""The one naming rule for what a reservation gives back."""

from __future__ import annotations

import pytest

from projections.naming import refund_operation


@pytest.mark.parametrize(("operation", "named"), [
    ("training_h100_per_minute", "training_refund_h100"),
    ("training_a100_80gb_per_hour", "training_refund_a100_80gb"),
    ("inference_h100_per_second", "inference_refund_h100"),
    ("email", "email_refund"),
    ("voice_minute", "voice_minute_refund"),
    ("gpu-s", "gpu-s_refund"),
    ("gpt-4o", "gpt-4o_refund"),
    # "_per_" needs a family before and a unit after it to be the per-unit form.
    ("per_minute", "per_minute_refund"),
    ("training_per_minute", "training_per_minute_refund"),
    ("training_h100_per_", "training_h100_per__refund"),
])
def test_refunds_are_named_by_one_rule(operation: str, named: str) -> None:
    assert refund_operation(operation) == named


def test_a_refund_name_is_never_the_operation_itself() -> None:
    for operation in ("training_h100_per_minute", "email", "x_per_y", "a_b_per_c_d"):
        assert refund_operation(operation) != operation
