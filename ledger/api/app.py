"""``create_app``: the FastAPI application of API.md.

Routes only parse, call the ledger and render; errors become problem+json in ``problems``. With
no runtime given, the app's lifespan is the composition root for one API process: it opens the
ledger (``DATABASE_URL`` or the embedded default), Redis and the rate limiter, and on shutdown
stops the group-commit writer only after every command already submitted has committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis

from ledger.api import docs_ui, problems
from ledger.api.edge import Edge
from ledger.api.metrics import Metrics, MetricsMiddleware
from ledger.api.ratelimit import RateLimiter
from ledger.api.routes import (
    accounts,
    analytics,
    balance,
    billing,
    catalogue,
    controls,
    dashboard,
    deployments,
    export,
    grants,
    history,
    notifications,
    ops,
    plans,
    usage,
)
from ledger.api.runtime import Runtime
from ledger.bootstrap import open_ledger
from ledger.clock import Clock
from ledger.embedded import resolve_urls
from ledger.revocations import listen
from ledger.settings import Settings, load_settings

DESCRIPTION = """An event-sourced credits ledger for usage-based products.

Authenticate with `Authorization: Bearer <key>`. Money appears twice: `<name>_ucr` (integer
micro-credits) and `<name>` (decimal string of credits, six places). Errors are
`application/problem+json`. Writes accept an `Idempotency-Key`: the same key and body return the
first response (`Idempotent-Replayed: true`); the same key with another body is a 409.
"""


@asynccontextmanager
async def serve_runtime(settings: Settings, *, clock: Clock | None = None) -> AsyncIterator[Runtime]:
    """Open everything one API process needs, and close it in reverse order."""
    _, redis_url = await asyncio.to_thread(resolve_urls, settings, need_redis=True)
    async with open_ledger(settings, clock=clock) as ledger, AsyncExitStack() as stack:
        limiter = RateLimiter(redis_url) if redis_url else None
        redis = Redis.from_url(redis_url) if redis_url else None
        if settings.serve_background:
            # Small installs: the relay, a worker, the scheduler and the projections in this process. The worker
            # stops after the API has drained (exit stacks unwind in reverse).
            from projections.runner import projecting
            from workers.runner import Background, background_tasks

            bg = Background(settings, clock=clock)
            stack.callback(bg.close)
            bg.start_worker()
            await stack.enter_async_context(background_tasks(bg, ledger))
            # And the read models (history, activities, usage) kept current from the log.
            await stack.enter_async_context(projecting(ledger.engine))
        rt = Runtime(ledger=ledger, settings=settings, limiter=limiter, redis=redis)
        # Revoked keys leave this process's key cache as soon as any process announces them.
        revocations = asyncio.create_task(listen(redis_url, rt.forget_key, rt.forget_all_keys)) if redis_url else None
        try:
            yield rt
        finally:
            if revocations is not None:
                revocations.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await revocations
            if rt.stripe is not None:
                await rt.stripe.close()
            if limiter is not None:
                await limiter.close()
            if redis is not None:
                await redis.aclose()


def create_app(runtime: Runtime | None = None, *, settings: Settings | None = None) -> FastAPI:
    """The API app. Given a ``runtime`` (tests, embedding), it uses it; else it opens its own."""
    metrics = runtime.metrics if runtime is not None else Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:
            _attach(app, runtime)
            yield
            return
        async with serve_runtime(settings or load_settings()) as rt:
            rt.metrics = metrics
            _attach(app, rt)
            yield

    # /docs and /redoc come from docs_ui: FastAPI's own load their scripts from a CDN.
    app = FastAPI(title="Credit Ledger", version="1", description=DESCRIPTION, lifespan=lifespan, docs_url=None,
                  redoc_url=None)
    if runtime is not None:
        _attach(app, runtime)
    problems.install(app)
    docs_ui.install(app)
    for module in (accounts, balance, usage, grants, billing, plans, deployments, controls, notifications, catalogue,
                   ops, export, history, analytics, dashboard):
        app.include_router(module.router)
    app.add_middleware(Edge)  # inside the metrics: its answers are counted
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _attach(app: FastAPI, rt: Runtime) -> None:
    app.state.runtime = rt
    observe = rt.metrics.batch_size.observe
    if observe not in rt.ledger.writer.on_commit:
        rt.ledger.writer.on_commit.append(observe)
