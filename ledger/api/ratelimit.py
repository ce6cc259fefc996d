"""Per-plan HTTP rate limiting on Redis, for the API layer.

Each API key (or account) gets a budget of ``per_minute`` requests, set by its plan, shared by
every API process through Redis. The counting is the ``limits`` library's *sliding window
counter*: two integer keys per budget (this minute's count and the last one's), and a request
is allowed while ``last * (share of the last minute still in the window) + this <= limit``,
checked and incremented in one Lua script, so concurrent requests from any number of processes
can never overshoot. A fixed window would let a client spend its budget twice within a second
around the minute boundary; an exact moving window costs a list entry per request (thousands
per key on a large plan). The sliding counter is O(1) per key and smooth enough for HTTP 429s.

Fail-open: the rate limiter protects the API from overload and abuse, it is not part of the
ledger. Balances, limits and idempotency are enforced by PostgreSQL in the write path whether
Redis is up or not, so when Redis is unreachable a request is allowed (and a warning logged at
most every 10 s) rather than turning a Redis outage into an API outage. ``fail_open=False``
raises :class:`RateLimiterUnavailable` instead, for callers that prefer to refuse. The client
uses short timeouts and a single immediate retry, so a Redis that refuses connections costs a
request a millisecond and one that hangs about ``2 * timeout_s`` (with redis-py's defaults, 5 s
or more).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.storage.redis.bridge import RedisBridge
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from redis.asyncio import BlockingConnectionPool, ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

__all__ = ["KEY_PREFIX", "Decision", "RateLimiter", "RateLimiterUnavailable", "limits_storage_uri"]

logger = logging.getLogger(__name__)

#: Namespace of the limiter's Redis keys; ``limits`` appends ``:`` and its own key, e.g.
#: ``credits:rl:{LIMITER/<key>/<per_minute>/1/minute}`` (and ``…/-1`` for the last minute).
KEY_PREFIX = "credits:rl"

_WARN_EVERY_S = 10.0

#: ``limits``' sliding-window script (check, count, shift the window) and its SHA-1 for EVALSHA.
_SCRIPT: bytes = RedisBridge.SCRIPT_ACQUIRE_SLIDING_WINDOW
_SCRIPT_SHA = hashlib.sha1(_SCRIPT).hexdigest()

# ``limits`` wants ``async+<scheme>`` URIs (``async+redis+unix`` for a socket), then strips the
# prefix again and hands the plain URL to redis-py.
_SCHEMES = {"redis": "async+redis", "rediss": "async+rediss", "unix": "async+redis+unix"}


class RateLimiterUnavailable(Exception):
    """Redis could not be asked, and the limiter was built with ``fail_open=False``."""


@dataclass(frozen=True)
class Decision:
    """The verdict on one request, with what the ``RateLimit-*`` / ``Retry-After`` headers need.

    ``retry_after_s`` is 0 when allowed, else whole seconds (at least 1) until the window has
    room again. ``remaining`` is 0 when refused, -1 when not counted.
    """

    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int


def limits_storage_uri(redis_url: str) -> str:
    """The ``limits`` async storage URI for a ``redis://``, ``rediss://`` or ``unix://`` URL.

    Credentials, host, port, database number (path or ``?db=``) and query options are kept as
    they are: ``redis://:pw@host:6379/2`` becomes ``async+redis://:pw@host:6379/2``.
    """
    scheme, sep, rest = redis_url.partition("://")
    target = _SCHEMES.get(scheme.lower()) if sep else None
    if target is None:
        raise ValueError("expected a redis://, rediss:// or unix:// URL for the rate limiter")
    return f"{target}://{rest}"


class RateLimiter:
    """Per-key requests-per-minute budgets shared through Redis; one per process, reused.

    ``timeout_s`` bounds connecting, each Redis call, and waiting for a free connection when
    ``max_connections`` are all busy (an unbounded wait would hang requests behind a slow Redis;
    refusing at once would fail open exactly under a burst).

    The hot path (:meth:`hit`) is one ``EVALSHA`` of ``limits``' own sliding-window script on
    ``limits``' own key names, sent as pre-encoded bytes on a redis-py connection this class
    checks out itself. Going through ``limits``' strategy, storage and bridge and redis-py's
    ``Redis.evalsha`` and connection pool did far more work per request (argument encoding, two
    timeout contexts and a task per call, the pool's lock, socket poll and metrics; figures in
    docs/benchmarks.md, "What changed on the API side"), and the counters are the same keys, so
    ``limits`` still reads them for the refusal's ``Retry-After`` and for ``remaining``.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        fail_open: bool = True,
        timeout_s: float = 0.5,  # float-ok: seconds
        max_connections: int = 50,
    ) -> None:
        uri = limits_storage_uri(redis_url)
        self._fail_open = fail_open
        self._timeout_s = timeout_s
        self._pool: BlockingConnectionPool = BlockingConnectionPool.from_url(
            redis_url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            # One immediate retry covers a pooled connection the server closed; more, with
            # backoff (redis-py's default), would make every request wait on a dead Redis.
            retry=Retry(NoBackoff(), 1),
        )
        # With a pool given, limits builds ``redis.asyncio.Redis(connection_pool=pool)``; the
        # URI still selects the storage and must parse. ``options`` is typed as scalars only.
        self._storage = RedisStorage(
            uri,
            implementation="redispy",
            wrap_exceptions=True,
            key_prefix=KEY_PREFIX,
            connection_pool=self._pool,  # type: ignore[arg-type]
        )
        self._strategy = SlidingWindowCounterRateLimiter(self._storage)
        self._items: dict[int, RateLimitItemPerMinute] = {}
        # The hot path's connections: redis-py's, for the same URL (scheme, credentials, database,
        # TLS), but without a per-call socket timeout: one ``asyncio.timeout`` around the whole
        # call bounds it instead (redis-py's own costs a task per write and a context per read).
        # The pool object only parses the URL and builds connections; ``_idle`` holds them.
        # No retries inside redis-py (its default backs off and tries again on connect): ``_acquire``
        # makes the one immediate retry itself, so a Redis that refuses costs about a millisecond.
        self._factory: ConnectionPool = ConnectionPool.from_url(
            redis_url, socket_timeout=None, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0))
        self._idle: list[AbstractConnection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._commands: dict[tuple[str, int], list[bytes]] = {}
        self._last_warning: float | None = None  # float-ok: monotonic seconds
        self._suppressed = 0

    async def hit(self, key: str, per_minute: int, *, count_remaining: bool = True) -> Decision:
        """Consume one request of ``key``'s ``per_minute`` budget, if there is one left.

        The budget is identified by ``key`` *and* ``per_minute``: a key whose plan changes
        starts the new limit with a fresh window. Without ``count_remaining`` an allowed hit
        costs one round trip instead of two, and reports ``remaining`` as -1 (not counted).
        """
        if per_minute < 1:
            raise ValueError(f"per_minute must be at least 1, got {per_minute}")
        item = self._items.get(per_minute)
        if item is None:
            item = self._items[per_minute] = RateLimitItemPerMinute(per_minute)
        try:
            # The Lua script both decides and counts, atomically. The window stats are a
            # second read, used only for the headers: under concurrency they may be a few
            # requests stale, which the allow/refuse decision never is.
            allowed = await self._acquire(item, key)
            if allowed and not count_remaining:
                return Decision(allowed=True, limit=per_minute, remaining=-1, retry_after_s=0)
            stats = await self._strategy.get_window_stats(item, key)
        except (StorageError, RedisError, OSError) as exc:
            if not self._fail_open:
                raise RateLimiterUnavailable(f"rate limiter storage unavailable: {exc}") from exc
            self._warn(exc)
            # Nothing was counted, so report the whole budget.
            return Decision(allowed=True, limit=per_minute, remaining=per_minute, retry_after_s=0)
        if allowed:
            return Decision(allowed=True, limit=per_minute, remaining=stats.remaining, retry_after_s=0)
        # ``reset_time`` is an epoch time: when the weighted count next drops by one (the
        # last minute's share decaying, or this minute rolling over).
        retry_after_s = max(1, math.ceil(stats.reset_time - time.time()))
        return Decision(allowed=False, limit=per_minute, remaining=0, retry_after_s=retry_after_s)

    async def _acquire(self, item: RateLimitItemPerMinute, key: str) -> bool:
        """``SlidingWindowCounterRateLimiter.hit(item, key)``, as one pre-encoded ``EVALSHA``."""
        command = self._commands.get((key, item.amount))
        if command is None:
            command = self._command(item, key)
        async with asyncio.timeout(self._timeout_s), self._slots:
            conn = self._idle.pop() if self._idle else self._connection()
            for attempt in range(2):
                try:
                    await conn.send_packed_command(command, check_health=False)
                    try:
                        reply = await conn.read_response()
                    except NoScriptError:  # Redis restarted or SCRIPT FLUSH: load it, once
                        await conn.send_command("SCRIPT", "LOAD", _SCRIPT, check_health=False)
                        await conn.read_response()
                        await conn.send_packed_command(command, check_health=False)
                        reply = await conn.read_response()
                except RedisConnectionError:
                    # A pooled connection the server closed: one immediate retry, which reconnects.
                    await conn.disconnect(nowait=True)
                    if attempt:
                        raise
                    continue
                except BaseException:
                    # A reply may be half read (timeout, cancellation): never reuse the connection.
                    await conn.disconnect(nowait=True)
                    raise
                self._idle.append(conn)
                # The script returns Lua true (integer 1) when it counted the hit, false (nil) if not.
                return bool(reply == 1)
        raise AssertionError("unreachable")

    def _command(self, item: RateLimitItemPerMinute, key: str) -> list[bytes]:
        # ``limits``' key names for the sliding window (RedisStorage._current_window_key and
        # _previous_window_key under the bridge's prefix): the same keys its strategy reads.
        current = f"{KEY_PREFIX}:{{{item.key_for(key)}}}"
        command: list[bytes] = self._connection().pack_command(
            "EVALSHA", _SCRIPT_SHA, 2, f"{current}/-1", current, item.amount, item.get_expiry(), 1)
        if len(self._commands) > 10_000:
            self._commands.clear()
        self._commands[(key, item.amount)] = command
        return command

    def _connection(self) -> AbstractConnection:
        """A new, not yet connected, connection (it connects on its first command)."""
        return self._factory.connection_class(**self._factory.connection_kwargs)

    async def close(self) -> None:
        """Close the Redis connections. The limiter must not be used afterwards."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.disconnect()
        await self._factory.aclose()
        await self._pool.aclose()

    def _warn(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._last_warning is not None and now - self._last_warning < _WARN_EVERY_S:
            self._suppressed += 1
            return
        logger.warning(
            "rate limiter: Redis unavailable, allowing requests unlimited (%s: %s; %d more since"
            " the last warning)",
            type(exc.__cause__ or exc).__name__, exc, self._suppressed,
        )
        self._last_warning = now
        self._suppressed = 0
