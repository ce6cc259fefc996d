"""Stripe's webhooks into the in-process test app: a loopback HTTP server (a thread) that hands each
request to the app's ``httpx`` client on the tests' event loop.

The Stripe stand-in POSTs real, signed webhooks to a URL; the tests' app runs in-process on the
session loop (a manual clock, the test ledger). The bridge joins the two without changing a byte.
Whatever drives the stand-in must not block that loop: call its controls with ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import httpx
import uvicorn


class WebhookBridge:
    def __init__(self) -> None:
        self.target: tuple[httpx.AsyncClient, asyncio.AbstractEventLoop] | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self.target is None:
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"no test app"})
            return
        client, loop = self.target
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
                   if k.lower() not in (b"host", b"content-length")]
        future = asyncio.run_coroutine_threadsafe(
            client.request(scope["method"], scope["path"], content=body, headers=headers), loop)
        response = await asyncio.wrap_future(future)
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": [(k.encode(), v.encode()) for k, v in response.headers.items()
                                if k.lower() not in ("content-length", "transfer-encoding")]})
        await send({"type": "http.response.body", "body": response.content})

    def start(self) -> WebhookBridge:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(self, log_level="warning", lifespan="off", access_log=False))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name="stripe-webhook-bridge")
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the webhook bridge did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
