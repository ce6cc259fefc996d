"""A revoked API key reaches every API process at once: a Redis pub/sub message per revocation.

Each API process trusts a verified key for ``CREDITS_KEY_CACHE_S`` (a database lookup per request
would cost more than the rest of a small request). Whoever revokes a key (an API process, the
CLI) commits the revocation first, then publishes the key's id on :data:`CHANNEL`; every API
process subscribes and drops the key from its cache when the message arrives, typically a
millisecond or two after the commit.

Redis is not trusted with anything that must happen: the revocation is in PostgreSQL either way.
When a message cannot be published or received (Redis down, a subscription broken), the cache's
time limit still applies, so a revoked key is refused everywhere within ``CREDITS_KEY_CACHE_S``.
A subscriber that (re)subscribes drops its whole cache first, because messages published while
it was not subscribed are lost (pub/sub keeps nothing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = ["CHANNEL", "announce", "listen"]

logger = logging.getLogger(__name__)

#: The pub/sub channel; each message is one revoked key's id.
CHANNEL = "credits:api-keys:revoked"

_PUBLISH_TIMEOUT_S = 1.0  # float-ok: seconds
_RETRY_S = 1.0  # float-ok: seconds between attempts to subscribe again
_WARN_EVERY_S = 30.0  # float-ok: seconds


async def announce(redis: Redis, key_id: str) -> bool:
    """Tell every API process that ``key_id`` was revoked (call after the revocation commits).

    Best effort and bounded: ``False`` (and a warning) when Redis did not take the message;
    the other processes then refuse the key once their cache entry expires.
    """
    try:
        async with asyncio.timeout(_PUBLISH_TIMEOUT_S):
            await redis.publish(CHANNEL, key_id)
    except (RedisError, OSError, TimeoutError) as exc:
        logger.warning("api key %s revoked, but Redis did not pass it on (%s: %s); other API processes"
                       " refuse it when their key cache expires", key_id, type(exc).__name__, exc)
        return False
    return True


async def listen(redis_url: str, forget: Callable[[str], None], forget_all: Callable[[], None], *,
                 client_name: str = "credits-key-revocations") -> None:
    """Call ``forget(key_id)`` for each revocation announced, until cancelled.

    ``forget_all()`` is called each time the subscription is (re)established: whatever was
    announced while it was down is unknown. Redis errors are logged (at most every 30 s) and the
    subscription is tried again every second.
    """
    last_warning: float | None = None  # float-ok: monotonic seconds
    while True:
        client = Redis.from_url(redis_url, client_name=client_name, socket_connect_timeout=2)
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(CHANNEL)
                async for message in pubsub.listen():
                    if message["type"] == "subscribe":  # also after redis-py reconnects by itself
                        forget_all()
                    elif message["type"] == "message":
                        data = message["data"]
                        forget(data.decode() if isinstance(data, bytes) else str(data))
        except (RedisError, OSError) as exc:
            now = time.monotonic()
            if last_warning is None or now - last_warning >= _WARN_EVERY_S:
                logger.warning("key revocations: not subscribed (%s: %s); revoked keys are refused here"
                               " within CREDITS_KEY_CACHE_S until it is back", type(exc).__name__, exc)
                last_warning = now
        finally:
            await client.aclose()
        await asyncio.sleep(_RETRY_S)
