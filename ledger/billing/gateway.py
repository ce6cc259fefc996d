"""The one door to Stripe: the official SDK's client built from the settings, its answers as plain
dicts, and its failures as the ledger's errors.

Stripe unreachable, rate limiting or failing on its side: ``PaymentProviderUnavailable`` (503 with
``Retry-After``; nothing was recorded, retry). A key Stripe refuses or an object it does not know:
``PaymentProviderRejected`` (502: the server's setup, not the caller). The same Stripe idempotency
key with other parameters: ``IdempotencyConflict`` (409). No key set: ``PaymentProviderNotConfigured``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ledger.errors import (
    IdempotencyConflict,
    InvalidRequest,
    InvalidSignature,
    PaymentProviderNotConfigured,
    PaymentProviderRejected,
    PaymentProviderUnavailable,
)
from ledger.settings import Settings

if TYPE_CHECKING:  # the SDK takes most of a second to import: only when Stripe is used
    import stripe

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Parameters the API's caller chose: Stripe refusing one of them is the caller's 422.
_CALLERS_PARAMS = {"success_url", "cancel_url", "return_url"}
#: Stripe's page size limit: more refunds or sessions than this on one payment is not a case here.
_PAGE = 100


def header_key(key: str) -> str:
    """Stripe's ``Idempotency-Key`` header for one of the ledger's keys: the key itself when it is
    printable ASCII of at most 255 characters (Stripe's limit), else a digest of it. The ledger's keys
    carry the caller's, which may be any Unicode; the same key always gives the same header."""
    if len(key) <= 255 and all(" " < ch <= "~" for ch in key):
        return key
    return "credit-ledger:sha256:" + hashlib.sha256(key.encode()).hexdigest()


def stripe_id(value: Any) -> str | None:
    """An object's id whether Stripe sent it expanded or just its id."""
    if isinstance(value, dict):
        return str(value["id"]) if value.get("id") else None
    return str(value) if value else None


def as_dict(obj: Any) -> dict[str, Any]:
    """A Stripe object (or a dict already) as plain nested dicts and lists."""
    import stripe

    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict()
    return dict(obj)


class StripeGateway:
    """Stripe through its SDK (async calls). Built by the composition root; nothing runs at import."""

    def __init__(self, *, api_key: str | None, webhook_secret: str | None, api_base: str | None = None,
                 tolerance_s: int = 300, timeout_s: float = 20.0) -> None:  # float-ok: a duration
        self.webhook_secret = webhook_secret
        self.tolerance_s = tolerance_s
        self._client: stripe.StripeClient | None = None
        self._http: stripe.HTTPXClient | None = None
        if api_key:
            import stripe

            self._http = stripe.HTTPXClient(timeout=timeout_s)
            # Two retries on connection errors, with the SDK's own idempotency keys on POSTs.
            self._client = stripe.StripeClient(
                api_key, base_addresses={"api": api_base} if api_base else None, max_network_retries=2,
                http_client=self._http)

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeGateway:
        return cls(api_key=settings.stripe_api_key, webhook_secret=settings.stripe_webhook_secret,
                   api_base=settings.stripe_api_base, tolerance_s=settings.stripe_webhook_tolerance_s,
                   timeout_s=settings.stripe_timeout_s)

    async def close(self) -> None:
        """Close the connections to Stripe (the process is stopping)."""
        if self._http is not None:
            await self._http.close_async()  # type: ignore[no-untyped-call]

    @property
    def client(self) -> stripe.StripeClient:
        if self._client is None:
            raise PaymentProviderNotConfigured("Stripe is not configured on this server: set STRIPE_API_KEY")
        return self._client

    # ---- webhooks ------------------------------------------------------------------------------

    def verify(self, payload: bytes, signature: str | None) -> None:
        """Check ``Stripe-Signature`` over the raw body (the SDK's check, ``tolerance_s``); else
        ``InvalidSignature``."""
        if not self.webhook_secret:
            raise PaymentProviderNotConfigured("Stripe webhooks are not configured: set STRIPE_WEBHOOK_SECRET")
        if not signature:
            raise InvalidSignature("no Stripe-Signature header")
        import stripe

        try:
            stripe.WebhookSignature.verify_header(payload.decode("utf-8", "replace"), signature,
                                                  self.webhook_secret, self.tolerance_s)
        except stripe.SignatureVerificationError as exc:
            raise InvalidSignature(f"the Stripe-Signature does not verify: {exc.user_message or exc}") from None

    # ---- calls ---------------------------------------------------------------------------------

    async def create_checkout_session(self, params: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
        return await self._call(lambda: self.client.v1.checkout.sessions.create_async(
            params,  # type: ignore[arg-type]
            {"idempotency_key": header_key(idempotency_key)} if idempotency_key else None))

    async def sessions_for_payment_intent(self, payment_intent: str) -> list[dict[str, Any]]:
        page = await self._call(lambda: self.client.v1.checkout.sessions.list_async(
            {"payment_intent": payment_intent, "limit": _PAGE}))
        return [as_dict(s) for s in page.get("data", [])]

    async def payment_intent(self, payment_intent: str) -> dict[str, Any]:
        """The PaymentIntent with its latest charge expanded (the receipt is on the charge)."""
        return await self._call(lambda: self.client.v1.payment_intents.retrieve_async(
            payment_intent, {"expand": ["latest_charge"]}))

    async def invoice(self, invoice: str) -> dict[str, Any]:
        return await self._call(lambda: self.client.v1.invoices.retrieve_async(invoice))

    async def subscription(self, subscription: str) -> dict[str, Any]:
        return await self._call(lambda: self.client.v1.subscriptions.retrieve_async(subscription))

    async def update_subscription(self, subscription: str, params: dict[str, Any],
                                  idempotency_key: str | None) -> dict[str, Any]:
        return await self._call(lambda: self.client.v1.subscriptions.update_async(
            subscription, params,  # type: ignore[arg-type]
            {"idempotency_key": header_key(idempotency_key)} if idempotency_key else None))

    async def create_price(self, params: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
        return await self._call(lambda: self.client.v1.prices.create_async(
            params,  # type: ignore[arg-type]
            {"idempotency_key": header_key(idempotency_key)} if idempotency_key else None))

    async def refunds_for_payment_intent(self, payment_intent: str) -> list[dict[str, Any]]:
        page = await self._call(lambda: self.client.v1.refunds.list_async(
            {"payment_intent": payment_intent, "limit": _PAGE}))
        return [as_dict(r) for r in page.get("data", [])]

    async def create_refund(self, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        return await self._call(lambda: self.client.v1.refunds.create_async(
            params, {"idempotency_key": header_key(idempotency_key)}))  # type: ignore[arg-type]

    async def pay_off_session(self, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        """Create and confirm an off-session PaymentIntent, answered with its latest charge expanded.

        A declined card or one that needs its owner is an answer, not an error: Stripe's card error
        carries the PaymentIntent (``last_payment_error`` says why), and that is returned.
        """
        expanded: dict[str, Any] = {**params, "expand": ["latest_charge"]}

        import stripe

        async def create() -> Any:
            try:
                return await self.client.v1.payment_intents.create_async(
                    expanded,  # type: ignore[arg-type]
                    {"idempotency_key": header_key(idempotency_key)})
            except stripe.CardError as exc:
                body: dict[str, Any] = exc.json_body if isinstance(exc.json_body, dict) else {}
                declined = (body.get("error") or {}).get("payment_intent")
                if not isinstance(declined, dict):
                    raise
                return declined

        return await self._call(create)

    async def create_customer(self, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        return await self._call(lambda: self.client.v1.customers.create_async(
            params, {"idempotency_key": header_key(idempotency_key)}))  # type: ignore[arg-type]

    async def customer(self, customer: str) -> dict[str, Any]:
        return await self._call(lambda: self.client.v1.customers.retrieve_async(customer))

    async def setup_intent(self, setup_intent: str) -> dict[str, Any]:
        return await self._call(lambda: self.client.v1.setup_intents.retrieve_async(setup_intent))

    async def create_portal_session(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self._call(lambda: self.client.v1.billing_portal.sessions.create_async(
            params))  # type: ignore[arg-type]

    async def _call(self, call: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
        import stripe

        try:
            return as_dict(await call())
        except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
            log.warning("Stripe unreachable or failing: %r", exc)
            raise PaymentProviderUnavailable(f"Stripe cannot be reached or is failing ({type(exc).__name__});"
                                             " nothing was recorded: retry later") from None
        except stripe.InvalidRequestError as exc:
            if exc.param in _CALLERS_PARAMS:  # e.g. a success_url Stripe does not accept: the caller's
                raise InvalidRequest(f"{exc.param}: Stripe refused it: {exc.user_message or exc}") from None
            log.error("Stripe refused a request: %r", exc)
            raise PaymentProviderRejected(f"Stripe refused the request: {exc.user_message or exc}") from None
        except stripe.IdempotencyError as exc:
            raise IdempotencyConflict(f"the idempotency key was used with a different request: {exc.user_message}"
                                      ) from None
        except stripe.StripeError as exc:
            log.error("Stripe refused a request: %r", exc)
            raise PaymentProviderRejected(f"Stripe refused the request: {exc.user_message or exc}") from None
