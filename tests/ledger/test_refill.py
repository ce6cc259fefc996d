"""The relay's pure reads of the log: crossings below the threshold, and the run-out trigger."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from ledger.refill import crossings, runs_out_within

C = 1_000_000
WEEK = timedelta(days=7)


def entries(start: int, amounts: list[int], first_version: int = 1) -> list[tuple[int, int, int]]:
    out, balance = [], start
    for i, amount in enumerate(amounts):
        balance += amount
        out.append((first_version + i, amount, balance))
    return out


def test_each_crossing_from_at_or_above_to_below_counts_once() -> None:
    # 10 -> 6 -> 5 (at the threshold: not below) -> 4 (crossing) -> 2 -> 22 (refilled) -> 3 (crossing)
    log = entries(10 * C, [-4 * C, -C, -C, -2 * C, 20 * C, -19 * C])
    assert crossings(5 * C, log) == [3, 6]
    assert crossings(0, log) == []
    assert crossings(100 * C, log) == []  # never at or above: no crossing


def test_a_slice_of_the_log_answers_alone() -> None:
    log = entries(10 * C, [-4 * C, -C, -C, -2 * C, 20 * C, -19 * C])
    assert crossings(5 * C, log[3:]) == [6]  # version 4 starts below: it did not cross
    assert crossings(5 * C, log[2:3]) == [3]


def test_events_that_move_no_money_never_cross() -> None:
    assert crossings(5 * C, [(1, 0, 4 * C), (2, 0, 4 * C)]) == []


@given(st.lists(st.integers(-10 * C, 10 * C), max_size=40), st.integers(-5 * C, 20 * C))
def test_crossings_alternate_with_recoveries(amounts: list[int], threshold: int) -> None:
    log = entries(10 * C, amounts)
    found = crossings(threshold, log)
    balances = {v: after for v, _, after in log}
    for v in found:
        assert balances[v] < threshold <= balances.get(v - 1, 10 * C)
    # Between two crossings the balance went back to at or above the threshold.
    for a, b in pairwise(found):
        assert any(balances[v] >= threshold for v in range(a + 1, b))


def test_runs_out_within_counts_usage_and_running_deployments() -> None:
    # 7 credits burned a week is 1 a day: 10 credits last 10 days.
    assert not runs_out_within(10 * C, 24 * 9, burned_ucr=7 * C, window=WEEK)
    assert runs_out_within(10 * C, 24 * 10, burned_ucr=7 * C, window=WEEK)
    # A deployment at 1 credit an hour: 10 hours, whatever the usage.
    assert runs_out_within(10 * C, 10, burned_ucr=0, window=WEEK, hourly_ucr=C)
    assert not runs_out_within(10 * C, 9, burned_ucr=0, window=WEEK, hourly_ucr=C)
    assert not runs_out_within(10 * C, 10**6, burned_ucr=0, window=WEEK)  # idle: never
    assert runs_out_within(0, 1, burned_ucr=0, window=WEEK)  # already out
    assert runs_out_within(-C, 1, burned_ucr=0, window=WEEK)
