"""The store's SQL builder (``ledger.store.sql``): named parameters become asyncpg's ``$n`` only
where they are parameters, never inside a literal, a quoted identifier, a comment or a cast."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg  # type: ignore[import-untyped]
import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.store.sql import execute_with_literals, literal, positional, renamed, rows


def test_parameters_are_numbered_in_order_of_first_use() -> None:
    assert positional("SELECT :b, :a, :b") == ("SELECT $1, $2, $1", ("b", "a"))


def test_what_only_looks_like_a_parameter_is_left_alone() -> None:
    sql = ("SELECT ':x', E'\\':y', 'it''s :z', \"col:w\", CAST(:a AS int), :b::text, $$ :c $$,"
           " $tag$ :d $tag$ -- :e\n /* :f */ , :g")
    out, names = positional(sql)
    assert names == ("a", "b", "g")
    assert out == ("SELECT ':x', E'\\':y', 'it''s :z', \"col:w\", CAST($1 AS int), $2::text, $$ :c $$,"
                   " $tag$ :d $tag$ -- :e\n /* :f */ , $3")
    assert renamed("SELECT ':x', :x", 3) == "SELECT ':x', :w3_x"


@given(st.text(alphabet=st.characters(codec="utf-8", blacklist_characters="\x00")))
@example(":x")
@example("\\':x")
@example("'' :x ''")
def test_a_literal_goes_through_unchanged(value: str) -> None:
    """Any text, as the literal the write-and-commit message carries, is not rewritten."""
    lit = literal(value)
    assert positional(f"SELECT {lit}, :p") == (f"SELECT {lit}, $1", ("p",))
    assert positional(f"SELECT '{value.replace(chr(39), chr(39) * 2)}', :p")[1] == ("p",)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(codec="utf-8", blacklist_characters="\x00"))
       | st.text(alphabet="\\'\"$E;:-\n a"),
       at=st.datetimes(timezones=st.just(UTC)) | st.datetimes(),
       n=st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.none())
@example(text="it's \\ a \\' quote\\\\ and 'backslashes'\\); COMMIT; --", at=datetime(2026, 12, 3, 12), n=None)
async def test_a_prepared_write_executed_with_literals_stores_exactly_its_parameters(
    engine: AsyncEngine, text: str, at: datetime, n: int | None,
) -> None:
    """The write-and-commit message, as the store sends it: ``EXECUTE`` of a prepared statement with
    its parameters as literals (text, a time, a bigint, rows as JSON text cast to jsonb), then more
    statements. What lands is exactly the parameters, with ``standard_conforming_strings`` on or
    off; a naive time is UTC."""
    # A connection of its own, not the pool's: a failing example must not hand a broken one on.
    pg = await asyncpg.connect(engine.url.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await pg.execute("CREATE TEMP TABLE lit (t text, at timestamptz, n bigint, j jsonb)")
        statement = await pg.prepare("INSERT INTO lit SELECT $1, $2, $3, CAST(CAST($4 AS text) AS jsonb)")
        for conforming in ("on", "off"):
            await pg.execute(f"SET standard_conforming_strings = {conforming}; "
                             + execute_with_literals(statement.get_name(), [text, at, n, rows([[text, n]])])
                             + "; SELECT 1")
            back = await pg.fetchrow("DELETE FROM lit RETURNING t, at, n, j::text AS j")
            assert back["t"] == text
            assert back["at"] == (at if at.tzinfo is not None else at.replace(tzinfo=UTC))
            assert back["n"] == n
            assert orjson.loads(back["j"]) == [[text, n]]
    finally:
        await pg.close()
