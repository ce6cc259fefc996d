"""Rate-card versions in the database: load a new one, read the current one or any old one."""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.errors import RateCardError
from ledger.rates import RateCard, sample_rate_card


def _card_json(card: RateCard) -> str:
    return json.dumps(card.model_dump(mode="json"), sort_keys=True)


async def store_rate_card(engine: AsyncEngine, card: RateCard, source: str) -> bool:
    """Store ``card`` as a new version; False if that exact version is already stored.

    The same version with different content is refused: history priced with it must not change.
    """
    async with engine.begin() as conn:
        # One loader at a time, so two loads cannot both take the next sequence number.
        await conn.execute(text("LOCK TABLE rate_cards IN SHARE ROW EXCLUSIVE MODE"))
        row = (await conn.execute(text("SELECT card FROM rate_cards WHERE version = :v"),
                                  {"v": card.version})).first()
        if row is not None:
            # Content, not object equality: a card in use carries its price cache.
            if RateCard.model_validate(row.card).model_dump() != card.model_dump():
                raise RateCardError(
                    f"version {card.version!r} is already loaded with different content; bump the version")
            return False
        await conn.execute(text(
            "INSERT INTO rate_cards (version, seq, card, source, loaded_at)"
            " SELECT :v, coalesce(max(seq), 0) + 1, CAST(:c AS jsonb), :s, now() FROM rate_cards"),
            {"v": card.version, "c": _card_json(card), "s": source})
        codes = sorted(card.coupons)
        await conn.execute(text(
            "INSERT INTO coupons (code, max_redemptions) SELECT * FROM unnest(CAST(:c AS text[]),"
            " CAST(:m AS int[])) ON CONFLICT (code) DO UPDATE SET max_redemptions = excluded.max_redemptions"),
            {"c": codes, "m": [card.coupons[k].max_redemptions for k in codes]})
    return True


async def current_rate_card(conn: AsyncConnection) -> RateCard | None:
    """The most recently loaded version, or None when none was loaded yet."""
    row = (await conn.execute(text("SELECT card FROM rate_cards ORDER BY seq DESC LIMIT 1"))).first()
    return None if row is None else RateCard.model_validate(row.card)


async def latest_rate_card_version(conn: AsyncConnection) -> str | None:
    """The name of the most recently loaded version (what running processes compare theirs with)."""
    row = (await conn.execute(text("SELECT version FROM rate_cards ORDER BY seq DESC LIMIT 1"))).first()
    return None if row is None else str(row.version)


async def rate_card_version(conn: AsyncConnection, version: str) -> RateCard | None:
    """A stored version by name (to explain old charges)."""
    row = (await conn.execute(text("SELECT card FROM rate_cards WHERE version = :v"), {"v": version})).first()
    return None if row is None else RateCard.model_validate(row.card)


async def list_rate_cards(conn: AsyncConnection) -> list[tuple[str, str]]:
    """(version, loaded_at ISO) of every stored version, oldest first."""
    rows = (await conn.execute(text("SELECT version, loaded_at FROM rate_cards ORDER BY seq"))).all()
    return [(r.version, r.loaded_at.isoformat()) for r in rows]


async def ensure_rate_card(engine: AsyncEngine) -> RateCard:
    """The current card; on a fresh database the shipped sample is loaded first."""
    async with engine.connect() as conn:
        card = await current_rate_card(conn)
    if card is None:
        await store_rate_card(engine, sample_rate_card(), "sample")
        async with engine.connect() as conn:
            card = await current_rate_card(conn)
    assert card is not None
    return card
