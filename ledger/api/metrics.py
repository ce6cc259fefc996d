"""Prometheus metrics of one API process: requests, latencies, commits per batch, 402s, 429s.

Each app gets its own registry, so two apps in one process (tests) never collide.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("credits_http_requests_total", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("credits_http_request_duration_seconds", "HTTP request latency",
                                 ["method", "route"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.payment_required = Counter("credits_payment_required_total", "Gated requests refused with 402",
                                        ["reason"], registry=self.registry)
        self.rate_limited = Counter("credits_rate_limited_total", "Requests refused with 429",
                                    registry=self.registry)
        self.batch_size = Histogram("credits_commit_batch_commands", "Commands per group-commit transaction",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=self.registry)
        self.relay_lag = Gauge("credits_relay_lag_seconds",
                               "Age of the oldest event the relay has not handed over (the whole log; "
                               "NaN when the database did not answer)", registry=self.registry)
        self.projection_lag = Gauge("credits_projection_lag_seconds",
                                    "Age of the oldest event a read model has not folded (NaN when the database "
                                    "did not answer)", ["projection"], registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every request by its route template (never by raw path: no cardinality blow-up)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope.get("method", "")
            self.metrics.requests.labels(method, path, str(status)).inc()
            self.metrics.latency.labels(method, path).observe(time.perf_counter() - start)
            if status == 429:
                self.metrics.rate_limited.inc()
