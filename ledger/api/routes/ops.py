"""Liveness, readiness and Prometheus metrics (no key needed: for the operator's probes)."""

from __future__ import annotations

import asyncio
import math

from fastapi import APIRouter, Response
from sqlalchemy import text

from ledger.api.body import JsonBodyRoute
from ledger.api.deps import RT
from ledger.api.problems import problem_response
from projections.catalogue import PROJECTORS
from projections.freshness import status
from workers.relay import relay_lag

router = APIRouter(tags=["operations"], route_class=JsonBodyRoute)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "The database or Redis is unreachable."}})
async def readyz(rt: RT) -> Response:
    """Ready when PostgreSQL and Redis both answer (within 2 s each)."""
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(2):
            async with rt.ledger.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    if rt.redis is not None:
        try:
            async with asyncio.timeout(2):
                await rt.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"unreachable: {type(exc).__name__}"
    if all(v == "ok" for v in checks.values()):
        from fastapi.responses import JSONResponse

        return JSONResponse({"status": "ready", **checks})
    return problem_response(503, {"type": "https://credit-ledger.dev/problems/not-ready", "title": "Not ready",
                                  "status": 503, "detail": ", ".join(f"{k} {v}" for k, v in checks.items()),
                                  **checks})


@router.get("/metrics", response_class=Response)
async def metrics(rt: RT) -> Response:
    """Prometheus text format: requests, latencies, commits per batch, 402s, 429s, relay and projection lag."""
    # Read at scrape time (two index lookups): the relay may run in another process, and its lag
    # is what an operator alerts on when follow-ups (alerts, webhooks, debt pauses) fall behind.
    try:
        async with asyncio.timeout(2):
            async with rt.ledger.engine.connect() as conn:
                lag = (await relay_lag(conn)).total_seconds()
                fresh = await status(conn, PROJECTORS)
                projected = {name: f.lag_ms / 1000 for name, f in fresh.items()}  # float-ok: seconds
    except Exception:
        lag = math.nan  # float-ok: seconds; unknown rather than a stale value
        projected = {p.name: math.nan for p in PROJECTORS}
    rt.metrics.relay_lag.set(lag)
    for name, seconds in projected.items():
        rt.metrics.projection_lag.labels(name).set(seconds)
    return Response(rt.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
