"""Rich tables of the usage and analytics reads (``credits usage``, ``credits analytics``)."""

from __future__ import annotations

from rich import box
from rich.table import Table

from ledger.cli.render import when
from ledger.money import format_credits
from projections.queries.usage import AnalyticsReport, UsageReport


def _fresh(as_of_position: int, lag_ms: int) -> str:
    return f"as of log position {as_of_position}" + (f", {lag_ms} ms behind" if lag_ms else ", caught up")


def usage_table(r: UsageReport) -> Table:
    """One row per bucket and key, oldest first, with the total."""
    fmt = "%Y-%m-%d %H:%M" if r.bucket == "hour" else "%Y-%m-%d"
    t = Table(title=f"usage of {r.account_id} by {r.by}, per {r.bucket}, {when(r.start)} to {when(r.end)}",
              caption=_fresh(r.freshness.as_of_position, r.freshness.lag_ms), box=box.SIMPLE_HEAD)
    t.add_column(r.bucket)
    t.add_column(r.by)
    for name in ("events", "input tokens", "output tokens", "credits"):
        t.add_column(name, justify="right")
    for b in r.buckets:
        t.add_row(b.start.strftime(fmt), b.key or "-", f"{b.events:,}", f"{b.input_tokens:,}", f"{b.output_tokens:,}",
                  format_credits(b.cost_ucr))
    t.add_section()
    t.add_row("total", "", f"{sum(b.events for b in r.buckets):,}", "", "", format_credits(r.total_ucr))
    return t


def analytics_tables(r: AnalyticsReport) -> list[Table]:
    """The figures, the daily series, cost by model and deployment, top requests and suggestions."""
    f = r.figures
    summary = Table(title=f"analytics of {r.account_id}, last {f.days} days",
                    caption=_fresh(r.freshness.as_of_position, r.freshness.lag_ms), box=box.SIMPLE_HEAD,
                    show_header=False)
    summary.add_column("figure", style="bold")
    summary.add_column("credits", justify="right")
    for name, ucr in (("window total", f.window_total_ucr), ("this month so far", f.this_period_ucr),
                      ("daily average", f.daily_average_ucr), ("projected month-end", f.projected_month_end_ucr),
                      ("available", r.available_ucr)):
        summary.add_row(name, format_credits(ucr))
    summary.add_row("monthly budget", "-" if r.monthly_limit_ucr is None else format_credits(r.monthly_limit_ucr))
    summary.add_row("runs out", when(f.runout_at))

    series = Table(title="per day", box=box.SIMPLE_HEAD)
    series.add_column("day")
    series.add_column("events", justify="right")
    series.add_column("credits", justify="right")
    for p in f.series:
        series.add_row(p.day.isoformat(), f"{p.events:,}", format_credits(p.cost_ucr))

    models = Table(title="by model", box=box.SIMPLE_HEAD)
    for name in ("model", "integration"):
        models.add_column(name)
    for name in ("events", "input tokens", "output tokens", "credits"):
        models.add_column(name, justify="right")
    for m in f.by_model:
        models.add_row(m.key, m.kind or "-", f"{m.events:,}", f"{m.input_tokens:,}", f"{m.output_tokens:,}",
                       format_credits(m.cost_ucr))

    deployments = Table(title="by deployment", box=box.SIMPLE_HEAD)
    for name in ("deployment", "instance type", "status"):
        deployments.add_column(name)
    deployments.add_column("events", justify="right")
    deployments.add_column("credits", justify="right")
    for d in f.by_deployment:
        deployments.add_row(d.key, d.kind or "-", d.status or "-", f"{d.events:,}", format_credits(d.cost_ucr))

    top = Table(title="most expensive requests", box=box.SIMPLE_HEAD)
    for name in ("at", "operation", "execution", "flow", "agent"):
        top.add_column(name)
    top.add_column("credits", justify="right")
    for q in f.top_requests:
        top.add_row(when(q.occurred_at), q.operation, q.execution_id, q.flow or "-", q.agent or "-",
                    format_credits(q.cost_ucr))

    suggestions = Table(title="suggestions", box=box.SIMPLE_HEAD)
    suggestions.add_column("kind", style="bold")
    suggestions.add_column("suggestion")
    for s in f.suggestions:
        suggestions.add_row(s.kind, s.message)
    if not f.suggestions:
        suggestions.add_row("-", "nothing to suggest")
    return [summary, series, models, deployments, top, suggestions]
