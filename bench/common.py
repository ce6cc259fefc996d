"""Helpers every benchmark shares: scratch databases, the Redis server's pid, server logs, and
summaries of py-spy's collapsed stacks."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import asyncpg  # type: ignore[import-untyped]
from redis.asyncio import Redis
from sqlalchemy.engine import make_url


def libpq_url(url: str) -> str:
    """``url`` as a plain ``postgresql://`` DSN for asyncpg (no SQLAlchemy driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def recreate_database(server_url: str, name: str) -> None:
    """Drop database ``name`` (closing its sessions) and create it empty."""
    conn = await asyncpg.connect(libpq_url(server_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def redis_pid(url: str) -> int | None:
    """The Redis server's pid, for its CPU figure (None if it is not on this machine's /proc)."""
    r = Redis.from_url(url)
    try:
        info: dict[str, Any] = await r.info("server")
        pid = int(info.get("process_id", 0))
    except Exception:
        return None
    finally:
        await r.aclose()
    return pid if pid and await asyncio.to_thread(os.path.exists, f"/proc/{pid}") else None


def open_log(path: Path) -> IO[bytes]:
    """A server's log file, its folder created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


def short_frame(frame: str) -> str:
    """``fn (path:line)`` -> ``fn (module/path)``, without the line and the site-packages prefix."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


def summarise_profile(raw: str, top: int = 30,
                      categorise: Callable[[Sequence[str]], str] | None = None) -> dict[str, Any]:
    """Inclusive and self shares per function from py-spy's ``raw`` (collapsed stacks) output, and
    with ``categorise`` (raw frames -> a category) the share of each category."""
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [short_frame(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        n = int(count)
        total += n
        for f in set(frames):
            inclusive[f] += n
        own[frames[-1]] += n
        if categorise is not None:
            categories[categorise(stack.split(";"))] += n

    def share(n: int) -> float:
        return round(100 * n / total, 1) if total else 0.0

    out: dict[str, Any] = {"samples": total}
    if categorise is not None:
        out["categories_pct"] = [(f, share(n)) for f, n in categories.most_common()]
    out["inclusive_pct"] = [(f, share(n)) for f, n in inclusive.most_common(top)]
    out["self_pct"] = [(f, share(n)) for f, n in own.most_common(top)]
    return out
