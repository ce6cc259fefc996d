"""CSV cells a spreadsheet opens safely: quoting by the stdlib ``csv`` module (RFC 4180: a cell with
a comma, a quote or a line break is quoted, its quotes doubled) and text neutralised against
formula injection (OWASP "CSV Injection").

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula, and some treat
a leading tab or carriage return the same way; OWASP's advice is to prefix such a cell with a
single quote, which makes it text. ``text_cell`` does that to every text a user supplied
(attribution values, operation slugs).

Numbers the ledger formats itself (``number_cell``, ``credits_cell``) are exempt: ``-1.500000`` is
a number, not a formula, and quoting it would turn a column accountants sum into text. Nothing a
user wrote reaches those cells: they are rendered from integers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from ledger.money import format_credits

#: First characters a spreadsheet may read as the start of a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: str | None) -> str:
    """User-supplied text as a cell: empty for none, a leading ``'`` when it could start a formula."""
    if value is None:
        return ""
    return "'" + value if value.startswith(FORMULA_START) else value


def number_cell(value: int) -> str:
    """An integer the ledger counted (tokens): written as is, sign included."""
    return str(int(value))


def credits_cell(ucr: int) -> str:
    """An amount in µcr as credits with six places (``ledger.money.format_credits``), sign included."""
    return format_credits(ucr)


def csv_text(rows: Iterable[Sequence[str]]) -> str:
    """``rows`` (cells already made by the functions above) as CSV text, each line ending in CRLF."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(rows)
    return out.getvalue()
