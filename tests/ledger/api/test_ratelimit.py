"""The per-plan rate limiter against a real Redis: budgets, sharing, atomicity, fail-open."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from ledger.api.ratelimit import KEY_PREFIX, Decision, RateLimiter, RateLimiterUnavailable, limits_storage_uri

CLOSED_PORT = "redis://127.0.0.1:1/0"


def unique_key() -> str:
    return f"test:{secrets.token_hex(8)}"


@pytest_asyncio.fixture(loop_scope="session")
async def limiter(redis_url: str) -> AsyncIterator[RateLimiter]:
    limiter = RateLimiter(redis_url)
    try:
        yield limiter
    finally:
        await limiter.close()


async def test_the_budget_is_allowed_then_refused_with_a_retry_after(limiter: RateLimiter) -> None:
    key = unique_key()
    decisions = [await limiter.hit(key, 5) for _ in range(5)]
    assert all(d.allowed and d.limit == 5 and d.retry_after_s == 0 for d in decisions)
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]

    refused = await limiter.hit(key, 5)
    assert not refused.allowed
    assert refused.limit == 5
    assert refused.remaining == 0
    assert 1 <= refused.retry_after_s <= 60
    assert not (await limiter.hit(key, 5)).allowed, "a refused request must not free a slot"


async def test_without_counting_remaining_the_budget_is_the_same(limiter: RateLimiter) -> None:
    key = unique_key()
    decisions = [await limiter.hit(key, 3, count_remaining=False) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [-1, -1, -1, 0]
    assert decisions[-1].retry_after_s >= 1


async def test_keys_have_independent_budgets(limiter: RateLimiter) -> None:
    first, second = unique_key(), unique_key()
    for _ in range(3):
        assert (await limiter.hit(first, 3)).allowed
    assert not (await limiter.hit(first, 3)).allowed
    assert await limiter.hit(second, 3) == Decision(allowed=True, limit=3, remaining=2, retry_after_s=0)


async def test_the_budget_is_shared_by_limiters_on_the_same_redis(redis_url: str) -> None:
    """Two API processes, one budget."""
    one, two = RateLimiter(redis_url), RateLimiter(redis_url)
    try:
        key = unique_key()
        allowed = [(await (one if i % 2 else two).hit(key, 10)).allowed for i in range(16)]
        assert allowed == [True] * 10 + [False] * 6
        assert not (await one.hit(key, 10)).allowed
        assert not (await two.hit(key, 10)).allowed
    finally:
        await one.close()
        await two.close()


async def test_concurrent_hits_never_overshoot(redis_url: str, limiter: RateLimiter) -> None:
    """Check-and-count is one atomic step: a read-then-increment limiter would let more through."""
    key = unique_key()
    decisions = await asyncio.gather(*[limiter.hit(key, 20) for _ in range(50)])
    assert sum(d.allowed for d in decisions) == 20
    assert all(d.remaining == 0 and d.retry_after_s >= 1 for d in decisions if not d.allowed)

    other = RateLimiter(redis_url)  # and across processes at once
    try:
        key = unique_key()
        decisions = await asyncio.gather(*[(limiter if i % 2 else other).hit(key, 20) for i in range(50)])
        assert sum(d.allowed for d in decisions) == 20
    finally:
        await other.close()


async def test_unreachable_redis_fails_open_and_warns_at_most_every_ten_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = RateLimiter(CLOSED_PORT)
    try:
        with caplog.at_level(logging.WARNING, logger="ledger.api.ratelimit"):
            decisions = [await limiter.hit(unique_key(), 5) for _ in range(3)]
    finally:
        await limiter.close()
    assert decisions == [Decision(allowed=True, limit=5, remaining=5, retry_after_s=0)] * 3
    warnings = [r for r in caplog.records if r.name == "ledger.api.ratelimit"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


async def test_unreachable_redis_raises_when_not_failing_open() -> None:
    limiter = RateLimiter(CLOSED_PORT, fail_open=False)
    try:
        with pytest.raises(RateLimiterUnavailable):
            await limiter.hit(unique_key(), 5)
    finally:
        await limiter.close()


def with_db(url: str, db: int) -> str:
    """``url`` pointing at database ``db``: the path for redis://, ``?db=`` for unix://."""
    if url.startswith("unix://"):  # urlunsplit would drop the empty host: unix:/path
        return f"{url.partition('?')[0]}?db={db}"
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


async def test_keys_live_in_the_urls_database_under_the_prefix(redis_url: str) -> None:
    url = with_db(redis_url, 3)
    limiter = RateLimiter(url, fail_open=False)
    key = unique_key()
    try:
        await limiter.hit(key, 7)
    finally:
        await limiter.close()
    client = Redis.from_url(url)
    try:
        found = [k async for k in client.scan_iter(match=f"{KEY_PREFIX}:*{key}*")]
    finally:
        await client.aclose()
    assert found, "the counter must be in database 3"
    assert all(k.decode().startswith(f"{KEY_PREFIX}:") for k in found)


def test_redis_urls_become_limits_uris_with_credentials_and_database() -> None:
    assert limits_storage_uri("redis://:s3cr%40t@cache:6380/2") == "async+redis://:s3cr%40t@cache:6380/2"
    assert limits_storage_uri("rediss://user:pw@cache:6380/1?ssl_cert_reqs=none") == (
        "async+rediss://user:pw@cache:6380/1?ssl_cert_reqs=none"
    )
    assert limits_storage_uri("unix:///run/redis.sock?db=4") == "async+redis+unix:///run/redis.sock?db=4"
    with pytest.raises(ValueError):
        limits_storage_uri("memcached://cache:11211")
    with pytest.raises(ValueError):
        limits_storage_uri("cache:6379")


async def test_the_url_password_and_database_reach_the_connection() -> None:
    limiter = RateLimiter("redis://:s3cr%40t@127.0.0.1:1/2")
    try:
        kwargs = limiter._pool.connection_kwargs
        assert (kwargs["password"], kwargs["db"]) == ("s3cr@t", 2)
    finally:
        await limiter.close()


async def test_a_budget_must_be_positive(limiter: RateLimiter) -> None:
    with pytest.raises(ValueError):
        await limiter.hit(unique_key(), 0)


async def test_hits_still_count_after_redis_forgets_the_script(redis_url: str, limiter: RateLimiter) -> None:
    """A Redis restart (or SCRIPT FLUSH) drops the cached script: the limiter loads it again."""
    key = unique_key()
    assert (await limiter.hit(key, 3)).remaining == 2
    client = Redis.from_url(redis_url)
    try:
        await client.script_flush()
    finally:
        await client.aclose()
    assert (await limiter.hit(key, 3, count_remaining=False)).allowed
    assert (await limiter.hit(key, 3)).remaining == 0
    assert not (await limiter.hit(key, 3)).allowed


async def test_a_connection_the_server_closed_is_replaced_and_the_hit_counted_once(redis_url: str) -> None:
    """Redis drops idle clients (``timeout``, restarts): the next hit reconnects instead of failing open."""
    name = f"rl-test-{secrets.token_hex(4)}"
    limiter = RateLimiter(f"{redis_url}{'&' if '?' in redis_url else '?'}client_name={name}", fail_open=False)
    client = Redis.from_url(redis_url)
    try:
        key = unique_key()
        assert (await limiter.hit(key, 5, count_remaining=False)).allowed
        ours = [c["id"] for c in await client.client_list() if c.get("name") == name]
        assert ours, "the limiter's connections carry the URL's client_name"
        for client_id in ours:
            await client.client_kill_filter(_id=client_id)
        assert (await limiter.hit(key, 5, count_remaining=False)).allowed
        assert (await limiter.hit(key, 5)).remaining == 2, "each hit counted exactly once"
    finally:
        await client.aclose()
        await limiter.close()


async def test_a_redis_that_never_answers_fails_open_within_the_timeout() -> None:
    """A Redis that accepts connections but never replies (hung, or a black-holed proxy): each hit
    gives up after ``timeout_s`` and is allowed, and the stuck connection is never reused."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limiter = RateLimiter(f"redis://127.0.0.1:{port}/0", timeout_s=0.1)
    try:
        decisions = [await limiter.hit(unique_key(), 5, count_remaining=False) for _ in range(2)]
        assert decisions == [Decision(allowed=True, limit=5, remaining=5, retry_after_s=0)] * 2
        assert len(accepted) == 2, "a connection whose reply never came must not carry the next hit"
        strict = RateLimiter(f"redis://127.0.0.1:{port}/0", timeout_s=0.1, fail_open=False)
        try:
            with pytest.raises(RateLimiterUnavailable):
                await strict.hit(unique_key(), 5)
        finally:
            await strict.close()
    finally:
        await limiter.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
