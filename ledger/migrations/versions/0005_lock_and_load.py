"""``credits_lock_and_load``: a batch takes its accounts' locks and reads them in one round trip.

The write path (``ledger.store``) used to lock in one statement and read in the next: in a
single plain statement the snapshot is taken when the statement starts, before any lock wait,
so it could read an account as it was before the previous lock holder committed. A PL/pgSQL
function runs each of its statements with a fresh snapshot, so the read inside it, after the
locks, sees the last holder's commit, and the batch saves a round trip to the server.

The function returns exactly what ``EventStore._load`` decodes; a migration that changes the
columns it reads must replace it. Grants, limits and idempotency keys come back as arrays of the
composite types below (an output column cannot be an array of anonymous records).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
        CREATE TYPE credits_grant_row AS (grant_id uuid, source text, original_ucr bigint,
            remaining_ucr bigint, expires_at timestamptz, granted_at timestamptz)
    """)
    op.execute("""
        CREATE TYPE credits_limit_row AS (scope text, subject text, per_run_ucr bigint,
            per_day_ucr bigint, per_month_ucr bigint)
    """)
    op.execute("""
        CREATE TYPE credits_key_row AS (key text, request_hash bytea, first_version bigint,
            last_version bigint)
    """)
    op.execute("""
        CREATE FUNCTION credits_lock_and_load(lock_keys bigint[], ids text[], key_accounts text[],
                                              key_names text[])
        RETURNS TABLE (account_id text, name text, plan text, status text, debt_ucr bigint,
                       reserved_ucr bigint, version bigint, last_hash bytea, settings jsonb,
                       opened_at timestamptz, grants credits_grant_row[], limits credits_limit_row[],
                       keys credits_key_row[])
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
            SELECT a.account_id, a.name, a.plan, a.status, a.debt_ucr, a.reserved_ucr, a.version,
                   a.last_hash, a.settings, a.opened_at,
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
    """)


def downgrade() -> None:
    op.execute("DROP FUNCTION credits_lock_and_load(bigint[], text[], text[], text[])")
    op.execute("DROP TYPE credits_key_row")
    op.execute("DROP TYPE credits_limit_row")
    op.execute("DROP TYPE credits_grant_row")
