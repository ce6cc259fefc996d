"""``credits_lock_and_load`` also reads the spend counters the batch's debits add to.

Every debit is refused before it is recorded if it would take a spend counter past
``ledger.money.MAX_SPEND_UCR`` (a BIGINT column never overflows), so ``decide`` must know those
counters for every command that spends, not only when a budget or a limit gates it. They come
back in the same round trip as the account, as an array of ``credits_counter_row``; the function
is otherwise migration 0005's.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SIGNATURE = """
        CREATE FUNCTION credits_lock_and_load(lock_keys bigint[], ids text[], key_accounts text[],
                                              key_names text[]{counter_args})
        RETURNS TABLE (account_id text, name text, plan text, status text, debt_ucr bigint,
                       reserved_ucr bigint, version bigint, last_hash bytea, settings jsonb,
                       opened_at timestamptz, grants credits_grant_row[], limits credits_limit_row[],
                       keys credits_key_row[]{counter_column})
"""
_COUNTER_ARGS = """, counter_accounts text[],
                                              counter_scopes text[], counter_subjects text[],
                                              counter_periods text[]"""

_BODY = """
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
                GROUP BY i.account_id){counted}
            SELECT a.account_id, a.name, a.plan, a.status, a.debt_ucr, a.reserved_ucr, a.version,
                   a.last_hash, a.settings, a.opened_at,
                   ARRAY(SELECT ROW(g.grant_id, g.source, g.original_ucr, g.remaining_ucr, g.expires_at,
                                    g.granted_at)::credits_grant_row
                         FROM grants g WHERE g.account_id = a.account_id AND g.remaining_ucr > 0),
                   ARRAY(SELECT ROW(l.scope, l.subject, l.per_run_ucr, l.per_day_ucr,
                                    l.per_month_ucr)::credits_limit_row
                         FROM limits l WHERE l.account_id = a.account_id),
                   f.keys{counters_out}
            FROM accounts a LEFT JOIN found f ON f.account_id = a.account_id{counters_join}
            WHERE a.account_id = ANY(ids);
        END
        $fn$
"""
_COUNTED = """,
            counted AS (
                SELECT s.account_id,
                       array_agg(ROW(s.scope, s.subject, s.period, s.spent_ucr)::credits_counter_row)
                           AS counters
                FROM spend_counters s
                JOIN unnest(counter_accounts, counter_scopes, counter_subjects, counter_periods)
                    AS q(a, sc, su, pe)
                    ON s.account_id = q.a AND s.scope = q.sc AND s.subject = q.su AND s.period = q.pe
                GROUP BY s.account_id)"""


def _function(*, counters: bool) -> str:
    """The function's text: with the counters (this revision), or without (migration 0005's)."""
    signature = _SIGNATURE.format(counter_args=_COUNTER_ARGS if counters else "",
                                  counter_column=", counters credits_counter_row[]" if counters else "")
    return signature + _BODY.format(
        counted=_COUNTED if counters else "",
        counters_out=", n.counters" if counters else "",
        counters_join="\n            LEFT JOIN counted n ON n.account_id = a.account_id" if counters else "")


def upgrade() -> None:
    op.execute("CREATE TYPE credits_counter_row AS (scope text, subject text, period text, spent_ucr bigint)")
    op.execute("DROP FUNCTION credits_lock_and_load(bigint[], text[], text[], text[])")
    op.execute(_function(counters=True))


def downgrade() -> None:
    op.execute("DROP FUNCTION credits_lock_and_load(bigint[], text[], text[], text[], text[], text[], text[],"
               " text[])")
    op.execute("DROP TYPE credits_counter_row")
    op.execute(_function(counters=False))
