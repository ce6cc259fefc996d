"""The analytics figures and suggestions from rows given by hand (no database): each expected
figure is worked out here from the test card's prices (tests/data/rates.toml)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from ledger.views import DeploymentView
from projections.analytics import (
    HOURS_PER_MONTH,
    TOP_REQUESTS,
    Analytics,
    DayRow,
    Request,
    analyse,
    integration,
    reads_since,
    tokens_cost_ucr,
)
from tests.cards import frozen_rate_card
from tests.ledger.test_domain_purity import io_imported_by

CARD = frozen_rate_card()
NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def row(day: int, cost: int, *, dim: str = "account", key: str = "", operation: str = "email", events: int = 1,
        input_tokens: int = 0, output_tokens: int = 0, month: int = 11) -> DayRow:
    return DayRow(date(2026, month, day), dim, key, operation, events, cost, input_tokens, output_tokens)


def deployment(dep: str, instance_type: str, hourly: int, *, status: str = "running",
               started: datetime = NOW - timedelta(days=3)) -> DeploymentView:
    return DeploymentView(dep, instance_type, status, hourly, 0, 0, None, started)


def run(rows: list[DayRow], *, days: int = 7, requests: list[Request] | None = None,
        deployments: list[DeploymentView] | None = None, available: int = 0, limit: int | None = None) -> Analytics:
    return analyse(card=CARD, now=NOW, days=days, rows=rows, requests=requests or [], deployments=deployments or [],
                   available_ucr=available, monthly_limit_ucr=limit)


MONTH = [row(1, 1_000_000), row(14, 700_000), row(14, 500, dim="agent", key="bot"), row(20, 7_000)]


def test_series_this_period_average_and_projection() -> None:
    a = run(MONTH)
    assert a.window_start == datetime(2026, 11, 14, tzinfo=UTC)
    assert [(p.day.day, p.cost_ucr) for p in a.series] == [
        (14, 700_000), (15, 0), (16, 0), (17, 0), (18, 0), (19, 0), (20, 7_000)]
    assert a.window_total_ucr == 707_000
    assert a.this_period_ucr == 1_707_000  # the 1st is in the month, not in the window
    assert a.daily_average_ucr == 101_000
    # November has 30 days: 10 after the 20th.
    assert a.projected_month_end_ucr == 1_707_000 + 101_000 * 10
    assert a.suggestions == []


def test_the_average_rounds_down_to_the_ucr() -> None:
    assert run([row(20, 20)]).daily_average_ucr == 2  # 20 / 7 = 2.86
    assert run([row(20, 20)], days=14).daily_average_ucr == 1


def test_a_month_window_reaches_back_into_the_previous_month() -> None:
    a = run([row(31, 300, month=10), row(20, 30)], days=30)
    assert a.window_start == datetime(2026, 10, 22, tzinfo=UTC) == reads_since(NOW, 30)
    assert a.window_total_ucr == 330 and a.this_period_ucr == 30 and len(a.series) == 30
    assert reads_since(NOW, 7) == datetime(2026, 11, 1, tzinfo=UTC)


def test_runout_at_the_windows_burn_rate() -> None:
    # The window is 6 days 15 hours old and burned 707,000 µcr: as much again lasts as long again.
    assert run(MONTH, available=707_000).runout_at == NOW + timedelta(days=6, hours=15)
    assert run(MONTH, available=0).runout_at is None
    assert run([], available=10**9).runout_at is None


def test_by_model_and_by_deployment_sum_the_window_most_expensive_first() -> None:
    rows = [row(19, 300, operation="gpt-4o", events=2, input_tokens=10, output_tokens=5),
            row(20, 200, operation="gpt-4o", events=1, input_tokens=7, output_tokens=1),
            row(20, 900, operation="claude-haiku", events=4, input_tokens=40),
            row(20, 50, operation="email"),  # not a model
            row(2, 10_000, operation="gpt-4o-mini"),  # before the window
            row(20, 800, dim="deployment", key="d1", operation="gpu-s"),
            row(20, 100, dim="deployment", key="d1", operation="gpt-4o"),
            row(19, 50, dim="deployment", key="d2", operation="cpu-s")]
    a = run(rows, deployments=[deployment("d1", "gpu-s", 800_000)])
    assert [(m.key, m.cost_ucr, m.events, m.input_tokens, m.output_tokens, m.kind) for m in a.by_model] == [
        ("claude-haiku", 900, 4, 40, 0, "ai"), ("gpt-4o", 500, 3, 17, 6, "ai")]
    assert [(d.key, d.cost_ucr, d.events, d.kind, d.status) for d in a.by_deployment] == [
        ("d1", 900, 2, "gpu-s", "running"), ("d2", 50, 1, None, None)]


def test_top_requests_are_the_most_expensive_newest_first_among_equals() -> None:
    def req(cost: int, minutes: int) -> Request:
        return Request(uuid.uuid4(), "x", NOW - timedelta(minutes=minutes), "email", cost, 0, 0, None, None, None)
    given = [req(c, m) for m, c in enumerate([5, 50, 7, 50, *range(100, 120)])]
    top = run([], requests=given).top_requests
    assert len(top) == TOP_REQUESTS
    assert [r.cost_ucr for r in top] == list(range(119, 109, -1))
    pair = run([], requests=given[:4]).top_requests
    assert [(r.cost_ucr, r.occurred_at) for r in pair[:2]] == [(50, NOW - timedelta(minutes=1)),
                                                               (50, NOW - timedelta(minutes=3))]


# ---- suggestions -----------------------------------------------------------------------------


def kinds(a: Analytics) -> dict[str, dict[str, Any]]:
    return {f"{s.kind}:{s.figures.get('deployment_id') or s.figures.get('model') or ''}": s.figures
            for s in a.suggestions}


def hourly_rows(dep: str, instance_type: str, hours: int, requests: int = 0) -> list[DayRow]:
    out = [row(20, 0, dim="deployment", key=dep, operation=instance_type, events=hours)]
    if requests:
        out.append(row(20, 10, dim="deployment", key=dep, operation="gpt-4o", events=requests))
    return out


def test_an_idle_running_deployment_is_named_with_its_monthly_cost() -> None:
    deps = [deployment("idle", "gpu-s", 800_000),
            deployment("busy", "cpu-s", 50_000),
            deployment("new", "gpu-s", 800_000, started=NOW - timedelta(hours=23)),
            deployment("paused", "gpu-s", 800_000, status="paused")]
    rows = [*hourly_rows("idle", "gpu-s", 72), *hourly_rows("busy", "cpu-s", 72, requests=500),
            *hourly_rows("new", "gpu-s", 23)]
    found = kinds(run(rows, deployments=deps))
    assert list(found) == ["idle_deployment:idle"]
    f = found["idle_deployment:idle"]
    assert f["monthly_saving_ucr"] == 800_000 * HOURS_PER_MONTH and f["monthly_saving"] == "584.000000"
    assert f["hourly_ucr"] == 800_000 and f["requests"] == 0 and f["hours_charged"] == 72


def test_a_little_used_instance_is_offered_the_next_cheaper_type() -> None:
    deps = [deployment("big", "gpu-m", 2_400_000), deployment("smallest", "cpu-s", 50_000),
            deployment("used", "gpu-l", 3_990_000)]
    rows = [*hourly_rows("big", "gpu-m", 48, requests=47), *hourly_rows("smallest", "cpu-s", 48, requests=3),
            *hourly_rows("used", "gpu-l", 48, requests=48)]
    found = kinds(run(rows, deployments=deps))
    # 47 requests in 48 hours is under one an hour; cpu-s has nothing cheaper; 48 in 48 is enough.
    assert list(found) == ["over_provisioned:big"]
    f = found["over_provisioned:big"]
    assert f["suggested_instance_type"] == "gpu-s"  # the dearest type cheaper than gpu-m, not cpu-s
    assert f["suggested_hourly_ucr"] == 800_000
    assert f["monthly_saving_ucr"] == (2_400_000 - 800_000) * HOURS_PER_MONTH


def test_short_prompts_on_an_expensive_model_suggest_the_cheapest_model_of_its_kind() -> None:
    # gpt-4o: 20 requests, 4,000 input tokens (200 each) and 2,000 output tokens, charged 30,020 µcr.
    rows = [row(20, 30_020, operation="gpt-4o", events=20, input_tokens=4_000, output_tokens=2_000),
            # already the cheapest model: nothing to suggest
            row(20, 9_000, operation="gpt-4o-mini", events=50, input_tokens=5_000, output_tokens=5_000),
            # long prompts (1,000 tokens on average): not short
            row(20, 90_000, operation="claude-sonnet-4", events=10, input_tokens=10_000, output_tokens=1_000),
            # too few requests to judge (gpt-4o-mini would be cheaper)
            row(20, 90, operation="claude-haiku", events=9, input_tokens=90)]
    found = kinds(run(rows))
    assert list(found) == ["cheaper_model:gpt-4o"]
    f = found["cheaper_model:gpt-4o"]
    # At the card's rates, gpt-4o: 4,000 × 2.50 + 2,000 × 10 credits per 1M = 10,000 + 20,000 µcr;
    # gpt-4o-mini: 4,000 × 0.15 + 2,000 × 0.60 = 600 + 1,200 µcr; claude-haiku (0.25 and 1.25 per
    # 1M) would be 3,500 µcr.
    assert f["suggested_model"] == "gpt-4o-mini" and f["suggested_cost_ucr"] == 1_800
    assert f["estimated_cost_ucr"] == 30_000 and f["window_cost_ucr"] == 30_020
    assert f["estimated_saving_ucr"] == 30_000 - 1_800 and f["average_input_tokens"] == 200
    assert tokens_cost_ucr(CARD, "claude-haiku", 4_000, 2_000) == 3_500
    assert tokens_cost_ucr(CARD, "email", 1, 0) is None  # does not price tokens


def test_few_requests_on_an_expensive_model_are_not_judged() -> None:
    rows = [row(20, 30_000, operation="gpt-4o", events=9, input_tokens=900, output_tokens=900)]
    assert run(rows).suggestions == []


@pytest.mark.parametrize(("limit", "reached_on"), [
    # 1,707,000 spent, 101,000 a day: 293,000 more is 2.9 days, so the 3rd day after today.
    (2_000_000, "2026-11-23"),
    (1_707_000 + 101_000 * 10, "2026-11-30"),  # exactly the projection: hit on the last day
    (1_000_000, "2026-11-20"),  # already over
])
def test_a_budget_on_course_to_be_hit(limit: int, reached_on: str) -> None:
    [s] = run(MONTH, limit=limit).suggestions
    assert s.kind == "budget" and s.figures["reached_on"] == reached_on
    assert s.figures["monthly_limit_ucr"] == limit and s.figures["projected_month_end_ucr"] == 2_717_000
    assert reached_on in s.message


def test_a_budget_not_on_course_says_nothing() -> None:
    assert run(MONTH, limit=2_717_001).suggestions == []
    assert run(MONTH, limit=None).suggestions == []


def test_an_operation_no_longer_on_the_card_keeps_an_integration() -> None:
    assert integration(CARD, "whatsapp_message") == "whatsapp"
    assert integration(CARD, "voice_minute") == "voice" and integration(CARD, "gpu-s") == "compute"


def test_the_analytics_module_does_no_io() -> None:
    assert io_imported_by("projections.analytics") == []
