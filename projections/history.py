"""The billing history: one row per usage event (``proj_executions``) and, per deployment, the
hours charged and their credits (``proj_deployment_usage``)."""

from __future__ import annotations

from projections.projector import Projector

_Q = "data->'quantities'"
_A = "data->'attribution'"

HISTORY = Projector(
    name="history",
    tables=("proj_executions", "proj_deployment_usage"),
    types=frozenset({"UsageMetered"}),
    statements=(
        # Keyed by the event (no ON CONFLICT): folding an event twice fails loudly instead of counting it twice.
        "INSERT INTO {proj_executions} (account_id, version, event_id, occurred_at, operation, quantities,"
        " cost_ucr, input_tokens, output_tokens, duration_s, machine_type, member, agent, flow, run, node,"
        " execution_id, deployment_id, hour_index, reservation_id, gated, debt_added_ucr, rate_card_version)"
        f" SELECT account_id, version, event_id, occurred_at, data->>'operation', {_Q},"
        f" (data->>'cost_ucr')::bigint, COALESCE(({_Q}->>'input_tokens')::bigint, 0),"
        f" COALESCE(({_Q}->>'output_tokens')::bigint, 0),"
        f" COALESCE(({_Q}->>'hours')::bigint * 3600, ({_Q}->>'minutes')::bigint * 60, ({_Q}->>'seconds')::bigint),"
        " CASE WHEN data->>'hour_index' IS NOT NULL THEN data->>'operation' END,"
        f" {_A}->>'member', {_A}->>'agent', {_A}->>'flow', {_A}->>'run', {_A}->>'node', {_A}->>'execution',"
        f" COALESCE(data->>'deployment_id', {_A}->>'deployment'), (data->>'hour_index')::bigint,"
        " (data->>'reservation_id')::uuid, (data->>'gated')::boolean,"
        " COALESCE((data->>'debt_added_ucr')::bigint, 0), data->>'rate_card_version'"
        " FROM events WHERE {span} AND type = ANY(:types)",
        # Hourly charges only (they carry an hour index); a later span's instance type wins, as a
        # later event's would in one fold (an account's events reach the log in version order).
        "INSERT INTO {proj_deployment_usage} AS d (account_id, deployment_id, instance_type, hours, credits_ucr,"
        " first_at, last_at)"
        " SELECT account_id, data->>'deployment_id',"
        " (array_agg(data->>'operation' ORDER BY version DESC))[1],"
        f" sum(COALESCE(({_Q}->>'hours')::bigint, 1)), sum((data->>'cost_ucr')::bigint),"
        " min(occurred_at), max(occurred_at)"
        " FROM events WHERE {span} AND type = ANY(:types) AND data->>'hour_index' IS NOT NULL"
        " GROUP BY account_id, data->>'deployment_id'"
        " ON CONFLICT (account_id, deployment_id) DO UPDATE SET instance_type = excluded.instance_type,"
        " hours = d.hours + excluded.hours, credits_ucr = d.credits_ucr + excluded.credits_ucr,"
        " first_at = LEAST(d.first_at, excluded.first_at), last_at = GREATEST(d.last_at, excluded.last_at)",
    ),
)
