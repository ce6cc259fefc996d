"""CSV cells: what a spreadsheet would run as a formula is made text, and any text survives a round
trip through the stdlib reader (commas, quotes, line breaks)."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.csv_cells import FORMULA_START, credits_cell, csv_text, number_cell, text_cell


def read(csv_body: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(csv_body, newline="")))


@pytest.mark.parametrize("value", ["=SUM(A1:A9)", "+1", "-2+3", "@cmd", "\tx", "\r=1", "=", "-"])
def test_text_that_could_start_a_formula_gets_a_leading_quote(value: str) -> None:
    assert text_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["", "plain", "a=b", "1+1", " =1", "'=1", "ümlaut-flow", "x@y"])
def test_other_text_is_left_alone(value: str) -> None:
    assert text_cell(value) == value


def test_no_value_is_an_empty_cell() -> None:
    assert text_cell(None) == ""


def test_numbers_the_ledger_formats_are_exempt() -> None:
    # A negative number is a number in a spreadsheet, not a formula: left as is so it sums.
    assert number_cell(-5) == "-5"
    assert number_cell(1200) == "1200"
    assert credits_cell(-1_500_000) == "-1.500000"
    assert credits_cell(2750) == "0.002750"


def test_quoting_is_rfc_4180() -> None:
    body = csv_text([["a,b", 'say "hi"', "two\nlines", "plain"]])
    assert body == '"a,b","say ""hi""","two\nlines",plain\r\n'
    assert read(body) == [["a,b", 'say "hi"', "two\nlines", "plain"]]


# Attribution text: any character but NUL (refused on input), at most 200 of them.
_text = st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=200)


@given(st.lists(st.lists(_text, min_size=1, max_size=5), min_size=1, max_size=5))
def test_any_text_survives_a_round_trip_neutralised(rows: list[list[str]]) -> None:
    body = csv_text([[text_cell(v) for v in row] for row in rows])
    back = read(body)
    assert back == [[text_cell(v) for v in row] for row in rows]
    for row, original in zip(back, rows, strict=True):
        for cell, value in zip(row, original, strict=True):
            assert not cell.startswith(FORMULA_START)
            # Nothing lost: the cell is the value, or the value behind one quote.
            assert cell in (value, "'" + value)
