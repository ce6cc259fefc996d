"""A real uvicorn server on a loopback port, in a thread with its own event loop (for clients
that must talk HTTP over a socket: schemathesis, the SDK)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from ledger.api.app import create_app
from ledger.db import make_engine
from ledger.keys import create_operator_key
from ledger.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until_ready(proc: subprocess.Popen[Any], port: int, *, output: Callable[[], str],
                     timeout_s: float = 120) -> None:
    """Return once the server process ``proc`` answers ``/readyz`` on ``port``; if it exits or the
    time runs out, kill it and fail with what ``output`` says it printed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            printed = output()
            proc.wait()
            raise AssertionError(f"credits serve did not become ready:\n{printed}")
        time.sleep(0.1)


@contextmanager
def live_server(database_url: str, redis_url: str, *, configure: Callable[[FastAPI], None] | None = None,
                **settings_: Any) -> Iterator[str]:
    """Serve the API on ``database_url`` / ``redis_url`` (and any other ``Settings``; ``configure`` may add
    to the app first); yield its base URL once ready; stop it on exit."""
    settings = Settings(**{"database_url": database_url, "redis_url": redis_url, "key_env": "test",
                           "serve_background": False, **settings_})
    app = create_app(settings=settings)
    if configure is not None:
        configure(app)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # the port is ours from here on: no race for a "free" one
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="live-api", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200 and server.started:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the live API server did not become ready")
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def operator_key_for(database_url: str) -> str:
    """A new operator key on ``database_url`` (run outside any event loop)."""

    async def make() -> str:
        engine = make_engine(database_url, pool_size=1)
        try:
            key, _ = await create_operator_key(engine, "live tests", env="test")
            return key.key
        finally:
            await engine.dispose()

    return asyncio.run(make())
