"""Usage rolled up by hour (``proj_usage_hourly``): the account as a whole (``dim`` 'account') and
each attribution field an event names ('agent', 'member', 'flow', 'deployment'), by operation.

Reads sum the hours into days, weeks and months, and map operations to integrations and models
when they ask (``projections/queries``), so the rollup itself holds no rule that may change.
"""

from __future__ import annotations

from projections.projector import Projector

_A = "e.data->'attribution'"

USAGE = Projector(
    name="usage",
    tables=("proj_usage_hourly",),
    types=frozenset({"UsageMetered"}),
    statements=(
        # Sums add, so folding a span in pieces gives what folding it at once gives.
        "INSERT INTO {proj_usage_hourly} AS u (account_id, dim, key, operation, hour, events, cost_ucr,"
        " input_tokens, output_tokens)"
        " SELECT e.account_id, d.dim, d.key, e.data->>'operation', date_trunc('hour', e.occurred_at, 'UTC'),"
        " count(*), sum((e.data->>'cost_ucr')::bigint),"
        " sum(COALESCE((e.data->'quantities'->>'input_tokens')::bigint, 0)),"
        " sum(COALESCE((e.data->'quantities'->>'output_tokens')::bigint, 0))"
        " FROM events e CROSS JOIN LATERAL (VALUES ('account', ''),"
        f" ('agent', {_A}->>'agent'), ('member', {_A}->>'member'), ('flow', {_A}->>'flow'),"
        f" ('deployment', COALESCE(e.data->>'deployment_id', {_A}->>'deployment'))) AS d(dim, key)"
        " WHERE {span} AND e.type = ANY(:types) AND d.key IS NOT NULL"
        " GROUP BY 1, 2, 3, 4, 5"
        " ON CONFLICT (account_id, dim, key, operation, hour) DO UPDATE SET events = u.events + excluded.events,"
        " cost_ucr = u.cost_ucr + excluded.cost_ucr, input_tokens = u.input_tokens + excluded.input_tokens,"
        " output_tokens = u.output_tokens + excluded.output_tokens",
    ),
)
