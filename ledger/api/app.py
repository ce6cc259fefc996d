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

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from redis.asyncio import Redis

from ledger.api import problems
from ledger.api.edge import Edge
from ledger.api.metrics import Metrics, MetricsMiddleware
from ledger.api.ratelimit import RateLimiter
from ledger.api.routes import (
    accounts,
    balance,
    catalogue,
    controls,
    deployments,
    grants,
    notifications,
    ops,
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
            # Small installs: the relay, a worker and the scheduler in this process. The worker
            # stops after the API has drained (exit stacks unwind in reverse).
            from workers.runner import Background, background_tasks

            bg = Background(settings, clock=clock)
            stack.callback(bg.close)
            bg.start_worker()
            await stack.enter_async_context(background_tasks(bg, ledger))
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

    app = FastAPI(title="Credit Ledger", version="1", description=DESCRIPTION, lifespan=lifespan)
    if runtime is not None:
        _attach(app, runtime)
    problems.install(app)
    for module in (accounts, balance, usage, grants, deployments, controls, notifications, catalogue, ops):
        _add_routes(app, module.router)
    app.add_middleware(Edge)  # inside the metrics: its answers are counted
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _add_routes(app: FastAPI, router: APIRouter) -> None:
    """``router``'s routes, rebuilt on the app's own router (what ``include_router`` did in older
    FastAPI): an included router is now a nested matcher that walks every route of every router
    twice per request (~35 µs of CPU); a flat list is matched once. Rebuilt, not shared, so
    each app's ``dependency_overrides`` apply. Each router carries its own ``responses`` (the error
    documents), so the OpenAPI document is the same.
    """
    for route in router.routes:
        assert isinstance(route, APIRoute), route
        app.router.add_api_route(
            route.path, route.endpoint, response_model=route.response_model, status_code=route.status_code,
            tags=route.tags, dependencies=route.dependencies, summary=route.summary,
            description=route.description, response_description=route.response_description,
            responses=route.responses, deprecated=route.deprecated, methods=route.methods,
            operation_id=route.operation_id, response_model_include=route.response_model_include,
            response_model_exclude=route.response_model_exclude, response_model_by_alias=route.response_model_by_alias,
            response_model_exclude_unset=route.response_model_exclude_unset,
            response_model_exclude_defaults=route.response_model_exclude_defaults,
            response_model_exclude_none=route.response_model_exclude_none, include_in_schema=route.include_in_schema,
            response_class=route.response_class, name=route.name, route_class_override=type(route),
            callbacks=route.callbacks, openapi_extra=route.openapi_extra,
            generate_unique_id_function=route.generate_unique_id_function,
            strict_content_type=route.strict_content_type, max_body_size=route.max_body_size,
            form_limits=route.form_limits)


def _attach(app: FastAPI, rt: Runtime) -> None:
    app.state.runtime = rt
    observe = rt.metrics.batch_size.observe
    if observe not in rt.ledger.writer.on_commit:
        rt.ledger.writer.on_commit.append(observe)
