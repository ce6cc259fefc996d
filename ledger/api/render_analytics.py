"""Usage, analytics and run-cost reads as API bodies: every amount as ``<name>_ucr`` and ``<name>``."""

from __future__ import annotations

from typing import Any

from ledger.api.schemas import analytics as a
from ledger.money import format_credits
from projections.queries.usage import AnalyticsReport, CostLine, ExecutionCost, FlowCost, UsageReport

#: The integrations a run's ``credits`` always names (the Lux shape), used or not.
ALWAYS = ("ai", "email")


def _pair(name: str, ucr: int | None) -> dict[str, Any]:
    return {name: None if ucr is None else format_credits(ucr), f"{name}_ucr": ucr}


def usage(r: UsageReport) -> a.UsageOut:
    return a.UsageOut(
        account_id=r.account_id, bucket=r.bucket, by=r.by, **{"from": r.start}, to=r.end,
        data=[a.UsageBucketOut(start=b.start, key=b.key, events=b.events, input_tokens=b.input_tokens,
                               output_tokens=b.output_tokens, **_pair("credits", b.cost_ucr)) for b in r.buckets],
        **_pair("total", r.total_ucr), as_of_position=r.freshness.as_of_position, lag_ms=r.freshness.lag_ms)


def analytics(r: AnalyticsReport) -> a.AnalyticsOut:
    f = r.figures
    return a.AnalyticsOut(
        account_id=r.account_id, days=f.days, window_start=f.window_start,
        series=[a.DayOut(date=p.day, events=p.events, **_pair("credits", p.cost_ucr)) for p in f.series],
        **_pair("window_total", f.window_total_ucr), **_pair("this_period", f.this_period_ucr),
        **_pair("daily_average", f.daily_average_ucr), **_pair("projected_month_end", f.projected_month_end_ucr),
        by_model=[a.ModelCostOut(model=m.key, integration=m.kind, events=m.events, input_tokens=m.input_tokens,
                                 output_tokens=m.output_tokens, **_pair("credits", m.cost_ucr)) for m in f.by_model],
        by_deployment=[a.DeploymentCostOut(deployment_id=d.key, instance_type=d.kind, status=d.status,
                                           events=d.events, **_pair("credits", d.cost_ucr)) for d in f.by_deployment],
        top_requests=[a.RequestOut(entry_id=q.entry_id, execution_id=q.execution_id, occurred_at=q.occurred_at,
                                   operation=q.operation, input_tokens=q.input_tokens, output_tokens=q.output_tokens,
                                   flow=q.flow, agent=q.agent, deployment_id=q.deployment_id,
                                   **_pair("credits", q.cost_ucr)) for q in f.top_requests],
        runout_at=f.runout_at, **_pair("available", r.available_ucr), **_pair("monthly_budget", r.monthly_limit_ucr),
        suggestions=[a.SuggestionOut(kind=s.kind, message=s.message, figures=s.figures) for s in f.suggestions],
        as_of_position=r.freshness.as_of_position, lag_ms=r.freshness.lag_ms)


def _line(c: CostLine) -> a.CostLineOut:
    return a.CostLineOut(name=c.key, integration=c.integration, events=c.events, input_tokens=c.input_tokens,
                         output_tokens=c.output_tokens, **_pair("credits", c.cost_ucr))


def credits(by_integration: dict[str, int], total_ucr: int) -> dict[str, str | int]:
    """Credits by integration (``ai`` and ``email`` always) and ``total``, each in both forms."""
    out: dict[str, str | int] = {}
    amounts = {name: 0 for name in ALWAYS} | dict(sorted(by_integration.items(), key=lambda kv: (-kv[1], kv[0])))
    for name, ucr in [*amounts.items(), ("total", total_ucr)]:
        out[name] = format_credits(ucr)
        out[f"{name}_ucr"] = ucr
    return out


def execution(x: ExecutionCost) -> a.ExecutionCostOut:
    return a.ExecutionCostOut(
        account_id=x.account_id, execution_id=x.execution_id, executionId=x.execution_id, flow=x.flow,
        flowId=x.flow, agent=x.agent, run=x.run, member=x.member, started_at=x.started_at, ended_at=x.ended_at,
        events=x.events, credits=credits({i.key: i.cost_ucr for i in x.by_integration}, x.total_ucr),
        **_pair("total", x.total_ucr), by_node=[_line(n) for n in x.by_node],
        by_model=[_line(m) for m in x.by_model], by_tool=[_line(t) for t in x.by_tool],
        as_of_position=x.freshness.as_of_position, lag_ms=x.freshness.lag_ms)


def flow(f: FlowCost) -> a.FlowCostOut:
    return a.FlowCostOut(
        account_id=f.account_id, flow=f.flow, flowId=f.flow, **{"from": f.start}, to=f.end, events=f.events,
        credits=credits(f.by_integration, f.total_ucr), **_pair("total", f.total_ucr),
        executions=[a.FlowRunOut(flowId=f.flow, executionId=r.execution_id, execution_id=r.execution_id,
                                 started_at=r.started_at, events=r.events,
                                 credits=credits(r.by_integration, r.total_ucr)) for r in f.runs],
        has_more=f.has_more, as_of_position=f.freshness.as_of_position, lag_ms=f.freshness.lag_ms)
