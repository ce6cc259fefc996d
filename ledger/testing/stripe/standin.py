"""``StripeStandIn``: the stand-in's API server, its webhook delivery and its controls in one object.

See the package docstring (``ledger.testing.stripe``) for what it answers and how to drive it.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ledger.testing.stripe import checkout, payments, subscriptions
from ledger.testing.stripe.delivery import Deliverer, Delivery
from ledger.testing.stripe.errors import missing
from ledger.testing.stripe.store import Store

if TYPE_CHECKING:
    import stripe
    import uvicorn

T = TypeVar("T")


class StripeStandIn:
    """A local Stripe: ``with StripeStandIn(webhook_url=..., webhook_secret=...) as s: s.client()...``.

    ``port=0`` takes a free port; ``auto_deliver=False`` holds every event until ``deliver``;
    ``retry_delays`` (seconds) resends an event to an endpoint that did not answer 2xx.
    """

    def __init__(self, webhook_url: str | Sequence[str] | None = None, webhook_secret: str | None = None, *,
                 api_key: str = "sk_test_standin", host: str = "127.0.0.1", port: int = 0,
                 auto_deliver: bool = True, retry_delays: Sequence[float] = ()) -> None:  # float-ok: a duration
        urls = [webhook_url] if isinstance(webhook_url, str) else list(webhook_url or [])
        self.api_key = api_key
        self.webhook_secret = webhook_secret or "whsec_" + secrets.token_hex(16)
        self.host, self.port = host, port
        self.store = Store()
        self.deliverer = Deliverer(urls, self.webhook_secret, auto=auto_deliver, retry_delays=retry_delays)
        self.store.on_event.append(self.deliverer.enqueue)
        self.deliverer.on_delivered = self._delivered
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- the server -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: the SDK's ``api_base``; hosted pages live under ``/_standin``."""
        return self.store.base_url

    def bind(self) -> socket.socket:
        """Bind and listen (the port is known, and connections are queued, from here on)."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(2048)  # from here connections wait in the backlog until the server accepts them
        self.port = sock.getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.store.base_url = f"http://{host}:{self.port}"
        return sock

    def server(self, sock: socket.socket) -> uvicorn.Server:
        import uvicorn

        from ledger.testing.stripe.app import create_app

        config = uvicorn.Config(create_app(self), log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        return self._server

    def start(self) -> StripeStandIn:
        """Serve from a background thread until ``stop``; returns once it answers."""
        sock = self.bind()
        server = self.server(sock)
        self.deliverer.start()
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="stripe-standin",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Stripe stand-in did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.deliverer.stop()

    def __enter__(self) -> StripeStandIn:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def client(self, **options: Any) -> stripe.StripeClient:
        """A ``stripe.StripeClient`` on this stand-in (its ``api_key``, no network retries)."""
        import stripe

        options.setdefault("max_network_retries", 0)
        return stripe.StripeClient(self.api_key, base_addresses={
            "api": self.base_url, "connect": self.base_url, "files": self.base_url, "meter_events": self.base_url,
        }, **options)

    # -- controls: what the customer, the dashboard and the card networks do ------------------------

    def _locked(self, action: Callable[[], T]) -> T:
        with self.store.lock:
            return action()

    def complete_checkout(self, session_id: str, *, outcome: checkout.Outcome = "paid", amount: int | None = None,
                          payment_method: str = "pm_card_visa") -> dict[str, Any]:
        """The customer pays the session (``async``: paid later, see ``settle_async``); ``amount`` overrides
        the amount paid; a declining ``payment_method`` raises ``StripeError`` and leaves it open."""
        return self._locked(lambda: checkout.complete(self.store, session_id, outcome=outcome, amount=amount,
                                                      payment_method=payment_method))

    def settle_async(self, session_id: str, *, succeeded: bool = True) -> dict[str, Any]:
        """The delayed payment of an ``async`` completion: ``checkout.session.async_payment_succeeded``/``failed``."""
        return self._locked(lambda: checkout.settle_async(self.store, session_id, succeeded=succeeded))

    def fail_payment(self, session_id: str, *, payment_method: str = "pm_card_chargeDeclined") -> dict[str, Any]:
        """The card is declined at checkout (``payment_intent.payment_failed``); the session stays open."""
        return self._locked(lambda: checkout.fail(self.store, session_id, payment_method=payment_method))

    def renew(self, subscription_id: str) -> dict[str, Any]:
        """End the current period (see ``end_period``): a renewal unless set to cancel at the period end."""
        return self.end_period(subscription_id)

    def end_period(self, subscription_id: str) -> dict[str, Any]:
        """The period ends: a new ``subscription_cycle`` invoice charged to the default card (``invoice.paid``
        or ``invoice.payment_failed``), or with ``cancel_at_period_end``, ``customer.subscription.deleted``."""
        return self._locked(lambda: subscriptions.end_period(self.store, subscription_id))

    def refund(self, payment_intent: str | None = None, *, charge: str | None = None, amount: int | None = None,
               reason: str | None = None) -> dict[str, Any]:
        """A refund from the dashboard: ``refund.created`` and ``charge.refunded``."""
        params = {k: str(v) for k, v in (("payment_intent", payment_intent), ("charge", charge), ("amount", amount),
                                         ("reason", reason)) if v is not None}
        return self._locked(lambda: payments.create_refund(self.store, params))

    def dispute(self, payment_intent: str | None = None, *, charge: str | None = None, amount: int | None = None,
                reason: str = "fraudulent") -> dict[str, Any]:
        """The cardholder disputes the charge: ``charge.dispute.created``."""
        params = {k: str(v) for k, v in (("payment_intent", payment_intent), ("charge", charge), ("amount", amount),
                                         ("reason", reason)) if v is not None}
        return self._locked(lambda: payments.open_dispute(self.store, params))

    def close_dispute(self, dispute_id: str, *, won: bool) -> dict[str, Any]:
        """The dispute is decided: ``charge.dispute.closed`` with status ``won`` or ``lost``."""
        return self._locked(lambda: payments.close_dispute(self.store, dispute_id, won=won))

    def update_card(self, customer: str, payment_method: str = "pm_card_visa") -> dict[str, Any]:
        """The customer saves a new card in the portal: ``payment_method.attached``, ``customer.updated``."""
        return self._locked(lambda: subscriptions.update_card(self.store, customer, payment_method))

    # -- events and their delivery ------------------------------------------------------------------

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        """Events so far, oldest first (of one ``type`` if given)."""
        with self.store.lock:
            return [e for e in self.store.events if type is None or e["type"] == type]

    def event(self, event_id: str) -> dict[str, Any]:
        return self._locked(lambda: self.store.get("event", event_id))

    @property
    def webhook_urls(self) -> list[str]:
        """The endpoints events go to (may be set once the receiving app is up: later events go there)."""
        return list(self.deliverer.urls)

    @webhook_urls.setter
    def webhook_urls(self, urls: Sequence[str]) -> None:
        self.deliverer.urls = list(urls)

    @property
    def auto_deliver(self) -> bool:
        return self.deliverer.auto

    @auto_deliver.setter
    def auto_deliver(self, value: bool) -> None:
        self.deliverer.auto = value

    def deliver(self, event_id: str, *, times: int = 1, concurrently: bool = False, signed_at: int | None = None,
                secret: str | None = None, tamper: bool = False) -> list[Delivery]:
        """Send one event to every endpoint now, ``times`` times (``concurrently``: all at once), signed at
        ``signed_at`` (default now) with ``secret`` (default the endpoint's), its body changed after
        signing if ``tamper``. Returns the attempts."""
        event = self.store.objects.get(event_id)
        if event is None or event.get("object") != "event":
            raise missing("event", event_id)
        return self.deliverer.send(event, times=times, concurrently=concurrently, signed_at=signed_at,
                                   secret=secret, tamper=tamper)

    @property
    def deliveries(self) -> list[Delivery]:
        """Every delivery attempt so far, in the order they ended."""
        return list(self.deliverer.deliveries)

    def flush(self, timeout: float = 10.0) -> bool:  # float-ok: a duration
        """Wait until automatic delivery has sent every event so far."""
        return self.deliverer.flush(timeout)

    def _delivered(self, event_id: str, ok: int) -> None:
        with self.store.lock:
            event = self.store.objects.get(event_id)
            if event is not None and ok:
                event["pending_webhooks"] = max(0, event["pending_webhooks"] - ok)
