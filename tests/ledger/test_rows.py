"""The mapping between rows and state (``ledger.rows``) holds PostgreSQL's shapes to its names:
the composite types the load returns declare exactly its attributes in its order, and what the
load decodes from them is what the tables hold, field by field."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import commands as c
from ledger import rows
from ledger.service import Ledger
from ledger.state import Limit
from ledger.store import lock_key
from tests.ledger.conftest import OpenAccount

UCR = 1_000_000


async def test_the_composite_types_declare_the_mappings_attributes_in_its_order(engine: AsyncEngine) -> None:
    """Swapping two attributes of one of these types (two bigints, say) fails here, however the
    function that fills it is written."""
    async with engine.connect() as conn:
        found: dict[str, list[str]] = {}
        for r in (await conn.execute(text(
            "SELECT t.typname, a.attname FROM pg_type t JOIN pg_attribute a ON a.attrelid = t.typrelid"
            " WHERE t.typname = ANY(:names) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY t.typname, a.attnum"),
            {"names": list(rows.COMPOSITES)})).all():
            found.setdefault(r.typname, []).append(r.attname)
    assert {name: tuple(attrs) for name, attrs in found.items()} == dict(rows.COMPOSITES)


async def test_the_tables_have_the_mappings_columns(engine: AsyncEngine) -> None:
    tables = {"grants": rows.GRANT_COLUMNS, "limits": rows.LIMIT_COLUMNS, "idempotency_keys": rows.KEY_COLUMNS,
              "reservations": rows.RESERVATION_COLUMNS, "deployments": rows.DEPLOYMENT_COLUMNS,
              "accounts": rows.ACCOUNT_COLUMNS, "events": rows.EVENT_FIELDS, "disputes": rows.DISPUTE_COLUMNS}
    async with engine.connect() as conn:
        for table, names in tables.items():
            have = set((await conn.execute(text(
                "SELECT column_name FROM information_schema.columns WHERE table_name = :t"), {"t": table})).scalars())
            assert set(names) <= have, (table, set(names) - have)


async def test_the_load_decodes_what_the_tables_hold_field_by_field(
    engine: AsyncEngine, ledger: Ledger, open_account: OpenAccount,
) -> None:
    """A grant partly spent (original and remaining differ), a limit with three different caps and
    a key with a first and last version: each read back from ``credits_lock_and_load``'s composite
    rows and from its table, by name, equal."""
    a = await open_account(credits_ucr=10 * UCR)
    await ledger.execute(c.Charge(account_id=a, operation="email", quantity=3000, idempotency_key="spent"))
    await ledger.execute(c.SetLimit(account_id=a, scope="agent", subject="bot", per_run_ucr=1 * UCR,
                                    per_day_ucr=2 * UCR, per_month_ucr=3 * UCR))
    async with engine.connect() as conn:
        pg: Any = (await conn.get_raw_connection()).driver_connection
        (loaded,) = await pg.fetch("SELECT * FROM credits_lock_and_load($1, $2, $3, $4)",
                                   [lock_key(a)], [a], [a], ["spent"])
        table_grants = [rows.grant(r._mapping) for r in (await conn.execute(text(
            f"SELECT {rows.columns(rows.GRANT_COLUMNS)} FROM grants WHERE account_id = :a AND remaining_ucr > 0"),
            {"a": a})).all()]
        table_limits = [rows.limit(r._mapping) for r in (await conn.execute(text(
            f"SELECT {rows.columns(rows.LIMIT_COLUMNS)} FROM limits WHERE account_id = :a"), {"a": a})).all()]
        table_keys = [rows.stored_key(r._mapping) for r in (await conn.execute(text(
            f"SELECT {rows.columns(rows.KEY_COLUMNS)} FROM idempotency_keys WHERE account_id = :a AND key = 'spent'"),
            {"a": a})).all()]
        account_row = (await conn.execute(text(
            f"SELECT {rows.columns(rows.ACCOUNT_COLUMNS)} FROM accounts WHERE account_id = :a"), {"a": a})).one()

    grants = [rows.grant(g) for g in loaded["grants"]]
    assert sorted(grants, key=str) == sorted(table_grants, key=str)
    assert any(g.original_ucr != g.remaining_ucr for g in grants)
    assert sum(g.remaining_ucr for g in grants) == 7 * UCR
    assert [rows.limit(r) for r in loaded["limits"]] == table_limits == [
        (("agent", "bot"), Limit(per_run_ucr=1 * UCR, per_day_ucr=2 * UCR, per_month_ucr=3 * UCR))]
    (key,) = [rows.stored_key(k) for k in loaded["keys"]]
    assert [key] == table_keys and key[1].first_version <= key[1].last_version

    state = rows.account(loaded)
    from_table = rows.account(account_row._mapping)
    assert state == from_table
    assert (state.name, state.version, state.spent_ucr) == (account_row.name, account_row.version,
                                                            account_row.spent_ucr)


def test_state_goes_to_rows_in_the_mappings_column_order() -> None:
    from datetime import UTC, datetime
    from uuid import uuid4

    from ledger.grants import Grant
    from ledger.payments import Dispute
    from ledger.state import Deployment, Reservation

    now = datetime(2026, 12, 7, tzinfo=UTC)
    g = Grant(uuid4(), "promotion", 5, 3, now + timedelta(days=1), now)
    assert rows.grant(dict(zip(rows.GRANT_COLUMNS, rows.grant_row("a", g)[1:], strict=True))) == g
    r = Reservation(uuid4(), "email", 7, "held", now, now)
    assert rows.reservation(dict(zip(rows.RESERVATION_COLUMNS, rows.reservation_row("a", r)[1:], strict=True))) == r
    d = Deployment("d1", "gpu-s", 9, "paused", 2, 18, None, timedelta(hours=2, microseconds=5), "debt", now)
    assert rows.deployment(dict(zip(rows.DEPLOYMENT_COLUMNS, rows.deployment_row("a", d)[1:], strict=True))) == d
    (key, lim) = (("agent", "bot"), Limit(1, 2, 3))
    assert rows.limit(dict(zip(rows.LIMIT_COLUMNS, rows.limit_row("a", key, lim)[1:], strict=True))) == (key, lim)
    dispute = Dispute("dp_1", "won", 7, 7, now, now + timedelta(days=3))
    row = rows.dispute_row("a", uuid4(), dispute)[1:]
    assert rows.dispute(dict(zip(rows.DISPUTE_COLUMNS, row, strict=True))) == dispute


def test_an_auto_refill_round_trips_through_the_settings_json() -> None:
    """Every field of the auto-refill, its last request too, comes back from ``accounts.settings``."""
    import json
    from datetime import UTC, datetime

    from ledger.payments import AutoRefill, Payments, RefillRequest
    from ledger.state import AccountState

    now = datetime(2026, 12, 7, 13, 5, 1, 123456, tzinfo=UTC)
    refill = AutoRefill(True, 5 * UCR, 20 * UCR, 2000, 40 * UCR, 12, "cus_1", "pm_1", 2,
                        RefillRequest(42, 20 * UCR, 2000, "runout", now, "failed"), "D2026-12-07", 20 * UCR)
    settings = json.loads(rows.settings_json(AccountState(account_id="a", payments=Payments(auto_refill=refill))))
    assert rows.auto_refill(settings) == refill
    assert settings["auto_refill"] == rows.auto_refill_settings(refill)  # what verify compares
    assert "auto_refill" not in json.loads(rows.settings_json(AccountState(account_id="a")))
    assert rows.auto_refill({}) == AutoRefill()


def test_a_subscription_round_trips_through_the_settings_json() -> None:
    import json
    from datetime import UTC, datetime

    from ledger.payments import Payments, Subscription
    from ledger.state import AccountState

    end = datetime(2027, 1, 7, 13, 5, 1, 123456, tzinfo=UTC)
    for sub in (Subscription("sub_1", "pro", "active", end, True, "in_1"), Subscription("sub_2", "team", "canceled")):
        settings = json.loads(rows.settings_json(AccountState(account_id="a", payments=Payments(subscription=sub))))
        assert rows.subscription(settings) == sub
        assert settings["subscription"] == rows.subscription_settings(sub)  # what verify compares
        assert rows.stripe_pays_allowance(settings) is sub.live
    assert rows.subscription({}) is None and not rows.stripe_pays_allowance({})
