"""The Dramatiq broker: Redis by default, RabbitMQ when ``BROKER_URL`` says ``amqp://``.

Built explicitly (never Dramatiq's implicit global default) and with an explicit middleware list:
no Prometheus exposition server per worker (the API serves ``/metrics``), AsyncIO for the async
actors, and the stock retries, time and age limits.
"""

from __future__ import annotations

from dramatiq import Broker
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    AgeLimit,
    AsyncIO,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from ledger.embedded import resolve_urls
from ledger.settings import Settings


def broker_url(settings: Settings) -> str:
    """``BROKER_URL``, else ``REDIS_URL``, else the embedded Redis (started on first use)."""
    if settings.broker_url:
        return settings.broker_url
    redis_url = resolve_urls(settings, need_redis=True)[1]
    assert redis_url is not None
    return redis_url


def make_broker(url: str, *, extra: list[Middleware] | None = None, heartbeat_timeout_ms: int = 60_000,
                maintenance_chance: int = 1000, namespace: str = "credits") -> Broker:
    """A broker on ``url`` with the ledger's middleware; ``extra`` goes first (it must see
    worker shutdown before AsyncIO stops the event loop)."""
    middleware: list[Middleware] = [
        *(extra or []),
        AgeLimit(), TimeLimit(), ShutdownNotifications(), Callbacks(), Pipelines(), Retries(), CurrentMessage(),
        AsyncIO(),
    ]
    if url.startswith(("amqp://", "amqps://")):
        return RabbitmqBroker(url=url, middleware=middleware)
    return RedisBroker(  # type: ignore[no-untyped-call]
        url=url, middleware=middleware, namespace=namespace, heartbeat_timeout=heartbeat_timeout_ms,
        maintenance_chance=maintenance_chance)
