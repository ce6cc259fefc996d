"""Key revocations over Redis pub/sub, against a real Redis: delivered, and after a broken
subscription the whole cache is dropped (what was announced meanwhile is lost)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable

from redis.asyncio import Redis

from ledger.revocations import announce, listen


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def test_announced_revocations_reach_a_listener_and_a_resubscription_forgets_everything(
        redis_url: str) -> None:
    forgotten: list[str] = []
    resets: list[int] = []
    name = f"test-revocations-{secrets.token_hex(4)}"
    task = asyncio.create_task(listen(redis_url, forgotten.append, lambda: resets.append(1), client_name=name))
    redis = Redis.from_url(redis_url)
    try:
        await until(lambda: len(resets) == 1, "the listener subscribed (and dropped its cache)")
        mine = f"key{secrets.token_hex(4)}"
        assert await announce(redis, mine)
        await until(lambda: mine in forgotten, "the revocation arrived")

        # The subscription's connection dies: the listener subscribes again and, since anything
        # announced meanwhile is lost, drops everything it had cached.
        clients = await redis.client_list(_type="pubsub")
        ours = [c["id"] for c in clients if c.get("name") == name]
        assert len(ours) == 1, clients
        assert await redis.client_kill_filter(_id=ours[0])
        await until(lambda: len(resets) == 2, "the listener subscribed again")
        later = f"key{secrets.token_hex(4)}"
        assert await announce(redis, later)
        await until(lambda: later in forgotten, "revocations arrive again")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await redis.aclose()


async def test_an_announcement_redis_cannot_take_is_reported_not_raised() -> None:
    redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        assert await announce(redis, "somekeyid") is False
    finally:
        await redis.aclose()
