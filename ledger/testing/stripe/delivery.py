"""Webhook delivery: events POSTed, signed, to every endpoint, each attempt recorded.

Automatic delivery (the default) sends each new event from one background thread in the order
the events happened, as soon as the change that caused it is done. An endpoint that does not
answer 2xx gets the event again after each of ``retry_delays`` (none by default: a test
redelivers with ``deliver``), as Stripe retries with backoff. Held delivery (``auto=False``)
records events and sends nothing until ``deliver`` is called, which sends one event now, once or
``times`` times, one after the other or all at once, signed at any time, with any secret, or
with its body changed after signing.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ledger.testing.stripe.signing import header


@dataclass(frozen=True)
class Delivery:
    """One POST of an event to an endpoint: ``status`` is None when the endpoint could not be reached."""

    event_id: str
    event_type: str
    url: str
    status: int | None
    signed_at: int
    tampered: bool
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def render(event: dict[str, Any]) -> bytes:
    """The event's JSON body, pretty-printed as Stripe sends it."""
    return json.dumps(event, indent=2).encode()


class Deliverer:
    def __init__(self, urls: list[str], secret: str, *, auto: bool = True, timeout: float = 10.0,  # float-ok
                 retry_delays: Sequence[float] = ()) -> None:  # float-ok: a duration
        self.urls = list(urls)
        self.secret = secret
        self.auto = auto
        self.timeout = timeout
        self.retry_delays = list(retry_delays)
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        #: (event, the endpoints to send it to, how many times it was sent to them before); None stops.
        self._queue: queue.Queue[tuple[dict[str, Any], list[str], int] | None] = queue.Queue()
        self._timers: set[threading.Timer] = set()
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        #: Called after an event was delivered to every endpoint (to lower ``pending_webhooks``).
        self.on_delivered: Callable[[str, int], None] = lambda event_id, ok: None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stripe-standin-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            timers, self._timers = self._timers, set()
        for timer in timers:
            timer.cancel()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=self.timeout + 1)
            self._thread = None

    def enqueue(self, event: dict[str, Any]) -> None:
        """A new event: queued for the endpoints when delivery is automatic, else held."""
        event["pending_webhooks"] = len(self.urls)
        if self.auto and self.urls:
            with self._lock:
                self._pending += 1
            self._queue.put((event, list(self.urls), 0))

    def flush(self, timeout: float = 10.0) -> bool:  # float-ok: a duration
        """Wait until every queued event was sent; False if ``timeout`` ran out first."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while (job := self._queue.get()) is not None:
                event, urls, attempts = job
                try:
                    results = [self._post(client, url, event, int(time.time()), self.secret, False) for url in urls]
                    self.on_delivered(event["id"], sum(d.ok for d in results))
                    failed = [d.url for d in results if not d.ok]
                    if failed and attempts < len(self.retry_delays):
                        self._retry(event, failed, attempts)
                finally:
                    with self._idle:
                        self._pending -= 1
                        self._idle.notify_all()

    def _retry(self, event: dict[str, Any], urls: list[str], attempts: int) -> None:
        """Send ``event`` to ``urls`` again after the next delay (``flush`` waits for it too)."""
        def due() -> None:
            with self._lock:
                self._timers.discard(timer)
            self._queue.put((event, urls, attempts + 1))

        timer = threading.Timer(self.retry_delays[attempts], due)
        timer.daemon = True
        with self._lock:
            self._pending += 1
            self._timers.add(timer)
        timer.start()

    def send(self, event: dict[str, Any], *, times: int = 1, concurrently: bool = False,
             signed_at: int | None = None, secret: str | None = None, tamper: bool = False) -> list[Delivery]:
        """Send ``event`` to every endpoint ``times`` times now; the attempts, in the order they ended."""
        jobs = [url for _ in range(times) for url in self.urls]
        if not jobs:
            return []
        at = int(time.time()) if signed_at is None else signed_at
        key = self.secret if secret is None else secret
        if not concurrently:
            with httpx.Client(timeout=self.timeout) as client:
                results = [self._post(client, url, event, at, key, tamper) for url in jobs]
        else:
            barrier = threading.Barrier(len(jobs))
            results = []

            def one(url: str) -> None:
                with httpx.Client(timeout=self.timeout) as client:
                    barrier.wait()  # all at once: each request is ready before any is sent
                    results.append(self._post(client, url, event, at, key, tamper))

            threads = [threading.Thread(target=one, args=(url,)) for url in jobs]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        self.on_delivered(event["id"], sum(d.ok for d in results))
        return results

    def _post(self, client: httpx.Client, url: str, event: dict[str, Any], signed_at: int, secret: str,
              tamper: bool) -> Delivery:
        body = render(event)
        signature = header(body, secret, signed_at)
        if tamper:  # signed as sent by Stripe, then changed on the way
            body = render({**event, "livemode": not event["livemode"]})
        headers = {"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": signature,
                   "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}
        try:
            response = client.post(url, content=body, headers=headers)
            done = Delivery(event["id"], event["type"], url, response.status_code, signed_at, tamper)
        except httpx.HTTPError as exc:
            done = Delivery(event["id"], event["type"], url, None, signed_at, tamper, f"{type(exc).__name__}: {exc}")
        with self._lock:
            self.deliveries.append(done)
        return done
