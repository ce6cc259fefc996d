"""A local stand-in for Stripe: the REST API the project calls, hosted pages, signed webhooks.

Stripe cannot be reached from tests, demos or a laptop without network; the official ``stripe``
SDK is pointed at this server instead. Objects have Stripe's JSON shapes and id prefixes
(``cs_test_``, ``pi_``, ``ch_``, ``re_``, ``du_``, ``cus_``, ``pm_``, ``seti_``, ``sub_``,
``in_``, ``bps_``, ``evt_``), errors Stripe's body (``{"error": {"type", "code", "message",
"param", "decline_code"}}``) and status (400, 401, 402, 404). State lives in memory.

In Python (tests)::

    with StripeStandIn(webhook_url="http://127.0.0.1:8000/v1/stripe/webhook",
                       webhook_secret="whsec_test") as s:
        client = s.client()                      # a stripe.StripeClient on s.base_url
        cs = client.v1.checkout.sessions.create(params={"mode": "payment", ...})
        s.complete_checkout(cs.id)               # the customer pays
        s.flush()                                # webhooks sent

or ``stripe.api_base = s.base_url`` with ``stripe.api_key = s.api_key`` for the global
configuration. From a shell: ``credits stripe-standin --port 12111 --webhook-url URL
--webhook-secret whsec_...`` prints the base URL and the secret and runs until Ctrl-C.

API (``/v1``, ``Authorization: Bearer sk_test_...`` — any test key; else 401):

- ``checkout/sessions``: create (``mode`` payment | subscription | setup; ``line_items`` with
  ``price`` or ``price_data`` — ``recurring`` in subscription mode; ``metadata``,
  ``client_reference_id``, ``customer`` / ``customer_email`` / ``customer_creation``,
  ``payment_intent_data[metadata]`` / ``[setup_future_usage]`` (the card is saved on the
  customer), ``invoice_creation[enabled]`` (a paid invoice, ``billing_reason`` manual),
  ``subscription_data[metadata]``, ``success_url``, ``cancel_url``; other parameters are
  accepted and ignored), retrieve (``expand[]=line_items`` and ids), list (``payment_intent``,
  ``customer``, ``subscription``, ``status``), ``{id}/line_items``, ``{id}/expire``. ``url`` is
  the hosted page ``/_standin/checkout/{id}`` (Pay, Pay (async), Cancel; then ``success_url``
  with ``{CHECKOUT_SESSION_ID}`` filled in).
- ``customers`` (create, retrieve, update incl. ``invoice_settings[default_payment_method]``),
  ``payment_methods`` (retrieve, ``{id}/attach``, ``{id}/detach``, list by ``customer``),
  ``setup_intents`` (retrieve), ``prices`` and ``products`` (create, retrieve).
- ``payment_intents``: create (``confirm``, ``off_session``, ``customer``, ``payment_method``,
  ``metadata``), retrieve, list. Test cards: ``pm_card_visa`` (and ``pm_card_mastercard``,
  ``pm_card_amex``) succeed with a charge whose ``receipt_url`` is on the stand-in;
  ``pm_card_chargeDeclined`` answers 402 ``card_declined`` / ``generic_decline`` (``CardError``;
  the PaymentIntent ends ``requires_payment_method`` with ``last_payment_error``);
  ``pm_card_chargeDeclinedInsufficientFunds`` the same with ``insufficient_funds``;
  ``pm_card_authenticationRequired`` off-session answers 402 ``authentication_required``
  (PaymentIntent ``requires_action``), on-session ``requires_action`` with 200. Events
  ``payment_intent.created``, ``charge.succeeded`` / ``charge.failed``,
  ``payment_intent.succeeded`` / ``payment_intent.payment_failed``.
- ``charges`` (retrieve, list), ``refunds`` (create with ``payment_intent`` or ``charge``,
  optional ``amount``, ``metadata``, ``reason``; never more than is left on the charge:
  400 ``amount_too_large`` / ``charge_already_refunded``; retrieve, list), ``disputes``.
- ``subscriptions`` (retrieve, update ``items[0][price]`` / ``cancel_at_period_end`` /
  ``default_payment_method`` / ``metadata``, cancel with DELETE, list), ``invoices`` (retrieve, ``{id}/lines``, list by
  ``customer`` / ``subscription``; ``invoice_pdf``, ``hosted_invoice_url``, ``lines`` with ``period``,
  ``billing_reason``, ``subscription``, ``amount_paid``, ``status``).
- ``billing_portal/sessions`` (create: ``customer``, ``return_url``) → ``url`` to
  ``/_standin/portal/{id}`` ("Update card").
- ``events`` (retrieve, list by ``type``/``types``): ``{id, object, type, created,
  data: {object[, previous_attributes]}, api_version, livemode, pending_webhooks, request}``.
- ``Idempotency-Key`` on POST: the same key and parameters replay the first answer (success or
  card error) with ``Idempotent-Replayed: true``; the same key with other parameters is 400
  ``idempotency_error``. Keys are per API key. Validation errors are not kept.

Controls (``StripeStandIn`` method → HTTP control; JSON bodies, Stripe's error on refusal):

- ``complete_checkout(id, outcome="paid"|"async", amount=None, payment_method="pm_card_visa")``
  → ``POST /_standin/checkout/{id}/complete``. Payment mode: ``checkout.session.completed``
  (``payment_status`` paid, or unpaid for ``async``); ``amount`` overrides what was paid (an
  underpayment). Subscription mode: also ``customer.subscription.created`` and ``invoice.paid``
  (``billing_reason`` subscription_create); a declining card starts nothing (402). Setup mode:
  the card is attached to the customer and made their default (``setup_intent.succeeded``, ``payment_method.attached``,
  ``customer.updated``), the session names the ``setup_intent``.
- ``settle_async(id, succeeded=True)`` → ``POST /_standin/checkout/{id}/settle``:
  ``checkout.session.async_payment_succeeded`` or ``..._failed``.
- ``fail_payment(id, payment_method="pm_card_chargeDeclined")`` → ``POST
  /_standin/checkout/{id}/fail``: the card is declined at checkout, the session stays open.
- ``renew(sub)`` / ``end_period(sub)`` → ``POST /_standin/subscriptions/{id}/renew`` |
  ``/end_period``: the period ends; a new paid invoice for the next period (``invoice.paid``,
  ``subscription_cycle``; ``invoice.payment_failed`` and ``past_due`` if the default card
  declines) or, with ``cancel_at_period_end``, ``customer.subscription.deleted``.
- ``refund(payment_intent, charge=None, amount=None, reason=None)`` → ``POST /_standin/refunds``:
  a dashboard refund (``refund.created``, ``charge.refunded``).
- ``dispute(payment_intent, charge=None, amount=None, reason="fraudulent")`` → ``POST
  /_standin/disputes`` (``charge.dispute.created``); ``close_dispute(du, won=bool)`` → ``POST
  /_standin/disputes/{id}/close`` (``charge.dispute.closed``, status won | lost).
- ``update_card(customer, payment_method="pm_card_visa")`` → ``POST
  /_standin/customers/{id}/card``: as through the portal (``payment_method.attached``,
  ``customer.updated``).
- ``events(type=None)`` → ``GET /_standin/events?type=``; ``deliveries`` (each attempt: event,
  url, status, signed_at, tampered) → ``GET /_standin/deliveries``; ``flush(timeout)`` → ``POST
  /_standin/flush`` waits until automatic delivery has sent everything.
- Delivery: automatic (default; one background thread, in event order; ``retry_delays`` /
  ``--retry-delay`` resend to an endpoint that did not answer 2xx, none by default) or held
  (``auto_deliver=False``, ``--hold``, ``POST /_standin/config {"auto_deliver": false}``), to
  ``webhook_urls`` (settable once the receiving app is up; ``{"webhook_urls": [...]}`` there too);
  ``deliver(event_id, times=1, concurrently=False, signed_at=None, secret=None, tamper=False)``
  → ``POST /_standin/events/{id}/deliver`` sends one event now: late (a stale ``signed_at``),
  several times, all at once, in any order, with a wrong secret or a body changed after signing.

Every webhook carries ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``,
which ``stripe.Webhook.construct_event(payload, header, secret, tolerance=300)`` accepts.
Not modelled: taxes, discounts, prorations, trials, Connect; unknown parameters are not refused.
"""

from ledger.testing.stripe.delivery import Delivery
from ledger.testing.stripe.errors import StripeError
from ledger.testing.stripe.standin import StripeStandIn

__all__ = ["Delivery", "StripeError", "StripeStandIn"]
