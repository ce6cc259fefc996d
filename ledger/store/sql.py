"""The store's small SQL builder: named parameters for asyncpg, rows as one JSON parameter, literals.

The write path runs on the asyncpg connection itself (SQLAlchemy's per-statement machinery cost
more client CPU than PostgreSQL spent on the statements). It talks to PostgreSQL one way: every
query is plain SQL with named parameters (``:name``) run by ``fetch``, which numbers them for
asyncpg (``positional``, skipping literals, quoted identifiers, comments and casts). The only other
messages are the fixed transaction scripts (``BEGIN``, ``COMMIT``, ``ROLLBACK``) and the write sent
with its COMMIT as ``EXECUTE`` of the prepared write with its parameters as literals
(``execute_with_literals``; why: docs/architecture.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

import orjson

#: An asyncpg connection (asyncpg ships no type hints).
Pg = Any


#: A named parameter (``:name``), or something it must never be read in: a string literal (plain,
#: ``E''`` with backslash escapes, or dollar-quoted), a quoted identifier, a comment, a ``::`` cast.
_TOKEN = re.compile(r"""
    (?P<skip>
        (?<![\w])[eE]'(?:[^'\\]|\\.|'')*'
      | '(?:[^']|'')*'
      | "(?:[^"]|"")*"
      | --[^\n]*
      | /\*.*?\*/
      | \$\$.*?\$\$
      | \$(?P<tag>[A-Za-z_]\w*)\$.*?\$(?P=tag)\$
      | ::
    )
  | (?<![\w:]):(?P<name>[A-Za-z_]\w*)
""", re.DOTALL | re.VERBOSE)


def _each_param(statement: str, replace: Callable[[str], str]) -> str:
    """``statement`` with each ``:name`` parameter replaced by ``replace(name)``; literals, quoted
    identifiers, comments and casts are left as they are."""
    def sub(m: re.Match[str]) -> str:
        name = m.group("name")
        return m.group(0) if name is None else replace(name)

    return _TOKEN.sub(sub, statement)


@lru_cache(maxsize=512)
def positional(statement: str) -> tuple[str, tuple[str, ...]]:
    """``statement`` with its ``:name`` parameters as asyncpg's ``$n``, and the names in order."""
    names: list[str] = []

    def number(name: str) -> str:
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _each_param(statement, number), tuple(names)


@lru_cache(maxsize=512)
def renamed(sql: str, n: int) -> str:
    """``sql`` with each parameter prefixed ``w{n}_``, so the CTEs of one statement never collide."""
    return _each_param(sql, lambda name: f":w{n}_{name}")


async def fetch(pg: Pg, statement: str, params: dict[str, Any]) -> list[Any]:
    """Run ``statement`` (named parameters) on the asyncpg connection; its rows."""
    sql, names = positional(statement)
    rows: list[Any] = await pg.fetch(sql, *[params[n] for n in names])
    return rows


#: How a column of a ``rows`` parameter is read back in SQL, by PostgreSQL type.
_JSON_READ = {"jsonb": "r->{i}", "bytea": "decode(r->>{i}, 'hex')"}


@lru_cache(maxsize=64)
def rows_from(*columns: str) -> str:
    """``SELECT`` the rows of a ``rows`` parameter (``:rows``): one output column per ``name type``.

    A batch's rows travel as one JSON array of arrays: asyncpg encodes an array parameter element
    by element, with several ``collections.abc`` checks each, which costs the client more than
    orjson building the JSON and PostgreSQL taking it apart (docs/benchmarks.md).
    """
    reads = []
    for i, column in enumerate(columns):
        name, type_ = column.split()
        reads.append(f"{_JSON_READ.get(type_, 'CAST(r->>{i} AS ' + type_ + ')').format(i=i)} AS {name}")
    return f"SELECT {', '.join(reads)} FROM jsonb_array_elements(CAST(CAST(:rows AS text) AS jsonb)) AS r"


def _json_default(value: Any) -> Any:
    """What orjson leaves to us: bytes (as hex, for ``decode(..., 'hex')``) and asyncpg's UUIDs."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} into a row")


def rows(values: Any) -> str:
    """Rows as the JSON text ``rows_from`` reads; ``orjson.Fragment`` holds pre-serialised JSON."""
    return orjson.dumps(list(values), default=_json_default, option=orjson.OPT_NAIVE_UTC).decode()


def execute_with_literals(statement: str, values: Iterable[Any]) -> str:
    """``EXECUTE statement(…)``: a statement prepared on the connection, run from a simple-protocol
    message (which may carry more statements: the COMMIT) with its parameters as ``literal``s."""
    return f"EXECUTE {statement}({', '.join(literal(v) for v in values)})"


def literal(value: Any) -> str:
    """``value`` as an SQL literal for ``EXECUTE``. ``E'…'`` reads backslashes and quotes the same
    way whatever ``standard_conforming_strings`` says; both are escaped, so the text is exact."""
    if value is None:
        return "NULL"
    if isinstance(value, datetime):  # naive means UTC, as asyncpg and ``rows`` take it
        value = value.isoformat() if value.tzinfo is not None else value.isoformat() + "+00:00"
    elif type(value) is int:
        return str(value)
    if not isinstance(value, str):
        raise TypeError(f"no literal for {type(value).__name__}")
    if "\x00" in value:  # PostgreSQL's text cannot hold it, and the message would end there
        raise ValueError("text with a NUL character")
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
