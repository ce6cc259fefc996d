"""Every account keeps what it ever spent (``accounts.spent_ucr``); counters load only when needed.

Migration 0007 made every debit load the spend counters it adds to, so ``decide`` could refuse
one that would take a counter past ``ledger.money.MAX_SPEND_UCR``; passing their keys cost the
write path 10-20 %. Every counter is a part of what the account ever spent, so while
``spent_ucr`` plus the debit stays within the bound no counter can pass it, and the counters are
needed only by budgets, limits and alerts (as before 0007) or by an account near the bound.
``spent_ucr`` is the sum of every ``UsageMetered.cost_ucr``, held at most ``MAX_UCR`` (2^62).

``credits_lock_and_load`` goes back to migration 0005's arguments and returns ``spent_ucr``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTION = """
        CREATE FUNCTION credits_lock_and_load(lock_keys bigint[], ids text[], key_accounts text[],
                                              key_names text[])
        RETURNS TABLE (account_id text, name text, plan text, status text, debt_ucr bigint,
                       reserved_ucr bigint, spent_ucr bigint, version bigint, last_hash bytea,
                       settings jsonb, opened_at timestamptz, grants credits_grant_row[],
                       limits credits_limit_row[], keys credits_key_row[])
        LANGUAGE plpgsql VOLATILE AS $fn$
        #variable_conflict use_column
        BEGIN
            -- Transaction-scoped advisory locks, one per account, taken in key order by every
            -- writer so two batches never deadlock, in one statement (a PL/pgSQL loop would run
            -- the executor once per account). An empty array (a dry run) locks nothing.
            PERFORM pg_advisory_xact_lock(u)
            FROM (SELECT DISTINCT u FROM unnest(lock_keys) AS u ORDER BY u) AS in_key_order;
            -- A new statement, so a new snapshot: it sees what the last lock holder committed.
            RETURN QUERY
            WITH asked AS (SELECT * FROM unnest(key_accounts, key_names) AS q(a, k)),
            found AS (
                SELECT i.account_id,
                       array_agg(ROW(i.key, i.request_hash, i.first_version, i.last_version)::credits_key_row)
                           AS keys
                FROM idempotency_keys i JOIN asked ON i.account_id = asked.a AND i.key = asked.k
                GROUP BY i.account_id)
            SELECT a.account_id, a.name, a.plan, a.status, a.debt_ucr, a.reserved_ucr, a.spent_ucr,
                   a.version, a.last_hash, a.settings, a.opened_at,
                   ARRAY(SELECT ROW(g.grant_id, g.source, g.original_ucr, g.remaining_ucr, g.expires_at,
                                    g.granted_at)::credits_grant_row
                         FROM grants g WHERE g.account_id = a.account_id AND g.remaining_ucr > 0),
                   ARRAY(SELECT ROW(l.scope, l.subject, l.per_run_ucr, l.per_day_ucr,
                                    l.per_month_ucr)::credits_limit_row
                         FROM limits l WHERE l.account_id = a.account_id),
                   f.keys
            FROM accounts a LEFT JOIN found f ON f.account_id = a.account_id
            WHERE a.account_id = ANY(ids);
        END
        $fn$
"""


def upgrade() -> None:
    op.add_column("accounts", sa.Column("spent_ucr", sa.BigInteger(), nullable=False, server_default="0"))
    # What each account ever spent, from its log (costs are never negative, so the sum held at
    # 2^62 equals the fold's running sum held at 2^62).
    op.execute("""
        UPDATE accounts a SET spent_ucr = LEAST(s.total, 4611686018427387904)
        FROM (SELECT account_id, SUM(CAST(data ->> 'cost_ucr' AS numeric)) AS total FROM events
              WHERE type = 'UsageMetered' GROUP BY account_id) AS s
        WHERE s.account_id = a.account_id
    """)
    op.execute("DROP FUNCTION credits_lock_and_load(bigint[], text[], text[], text[], text[], text[], text[],"
               " text[])")
    op.execute(_FUNCTION)


def downgrade() -> None:
    # Back to migration 0007's function (it loads the counters of every debit), read from its
    # file: a revision's module name starts with a digit, so it cannot be imported by name.
    path = Path(__file__).with_name("0007_load_spend_counters.py")
    spec = importlib.util.spec_from_file_location("revision_0007", path)
    assert spec is not None and spec.loader is not None
    previous = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(previous)
    op.execute("DROP FUNCTION credits_lock_and_load(bigint[], text[], text[], text[])")
    op.execute(previous._function(counters=True))
    op.drop_column("accounts", "spent_ucr")
