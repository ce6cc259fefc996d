"""A webhook endpoint for the tests: verifies each POST with the stripe SDK, as the project's
handler does, answers 200 or 400 and remembers what arrived."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import stripe


@dataclass(frozen=True)
class Received:
    event_id: str | None
    event_type: str | None
    verified: bool
    error: str | None


@dataclass
class Receiver:
    secret: str
    #: Seconds each request takes (to see deliveries overlap).
    delay: float = 0.0
    #: Statuses to answer the next requests with, before verifying any (an endpoint having an outage).
    outage: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}/webhook"

    def verified(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.verified]

    def types(self) -> list[str]:
        return [r.event_type or "" for r in self.verified()]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.received)

    def receive(self, body: bytes, signature: str | None) -> int:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            with self.lock:
                if self.outage:
                    return self.outage.pop(0)
            try:
                event = stripe.Webhook.construct_event(body, signature, self.secret, tolerance=300)
            except (stripe.SignatureVerificationError, ValueError) as exc:
                with self.lock:
                    self.received.append(Received(None, None, False, str(exc)))
                return 400
            with self.lock:
                self.received.append(Received(event.id, event.type, True, None))
            return 200
        finally:
            with self.lock:
                self.in_flight -= 1

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(receiver.receive(body, self.headers.get("Stripe-Signature")))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
