"""Stripe's webhook events -> ledger commands. Pure: no I/O, tested without a network.

Exactly once rests on the keys: every command carries an idempotency key derived from the Stripe
*object* it records, never from the event or the delivery, and is built from that object alone.
So five deliveries of one event, ``checkout.session.completed`` and then
``checkout.session.async_payment_succeeded`` for the same payment, or a refund that needs its
purchase recorded first, all build the very same command under the same key, and the ledger's
idempotency replays it (same key, same request) instead of appending it again.

- purchase: ``stripe:checkout:{session id}``
- refund (clawback): ``stripe:refund:{refund id}``
- dispute: ``stripe:dispute:{dispute id}:opened`` / ``...:closed``
- auto-refill: ``stripe:refill:{account}:{crossing}:paid`` / ``...:failed`` (``ledger.billing.refills``)
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from ledger import commands as c
from ledger.billing.checkout import SOURCE
from ledger.billing.payment_methods import is_card_setup
from ledger.billing.refills import is_refill
from ledger.billing.subscription_events import plan_action
from ledger.money import floor_ucr, format_cents

Kind = Literal["purchase", "payment_failed", "refunded", "dispute_opened", "dispute_closed", "refill", "card_saved",
               "customer_updated", "subscription", "plan_invoice", "ignored"]

#: Checkout Session events that mean "paid" (``completed`` only when ``payment_status`` says so).
_PAID = "checkout.session.async_payment_succeeded"


def purchase_key(session_id: str) -> str:
    return f"stripe:checkout:{session_id}"


def refund_key(refund_id: str) -> str:
    return f"stripe:refund:{refund_id}"


def dispute_key(dispute_id: str, phase: Literal["opened", "closed"]) -> str:
    return f"stripe:dispute:{dispute_id}:{phase}"


@dataclass(frozen=True, slots=True)
class Action:
    """What an event asks for, and the Stripe object it is about."""

    kind: Kind
    obj: dict[str, Any]
    why: str = ""
    #: The Stripe event's id (keys what the event says, where the object alone cannot).
    event_id: str = ""


def classify(event: dict[str, Any]) -> Action:
    """What to do with a verified event; anything else is ignored (answered 200)."""
    etype = str(event.get("type", ""))
    obj = dict((event.get("data") or {}).get("object") or {})
    if etype == "checkout.session.completed" and is_card_setup(obj):
        return Action("card_saved", obj)
    if etype == "customer.updated":
        return Action("customer_updated", obj, event_id=str(event.get("id", "")))
    plan = plan_action(event)  # a plan's subscription or paid invoice (``ledger.billing.subscription_events``)
    if plan is not None:
        return Action(*plan)
    if etype.startswith("checkout.session."):
        if obj.get("mode") != "payment" or (obj.get("metadata") or {}).get("source") != SOURCE:
            return Action("ignored", obj, "not a credits checkout opened by this ledger")
        if etype == "checkout.session.completed":
            if obj.get("payment_status") == "paid":
                return Action("purchase", obj)
            return Action("ignored", obj, f"completed but {obj.get('payment_status')}: credits land when it is paid")
        if etype == _PAID:
            return Action("purchase", obj)
        if etype == "checkout.session.async_payment_failed":
            return Action("payment_failed", obj)
        return Action("ignored", obj, f"{etype} changes nothing")
    if etype in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        if is_refill(obj):  # an auto-refill's outcome (``ledger.billing.refills``)
            return Action("refill", obj)
        return Action("ignored", obj, "not an auto-refill: checkouts are recorded from their session")
    if etype == "charge.refunded":
        return Action("refunded", obj)
    if etype == "charge.dispute.created":
        return Action("dispute_opened", obj)
    if etype == "charge.dispute.closed":
        return Action("dispute_closed", obj)
    return Action("ignored", obj, f"{etype or 'an event without a type'} is not one the ledger acts on")


def _id(value: Any) -> str | None:
    """An id whether Stripe sent the object expanded or just its id."""
    if isinstance(value, dict):
        return str(value["id"]) if value.get("id") else None
    return str(value) if value else None


@dataclass(frozen=True, slots=True)
class Notice:
    """A payment that credits nothing and must be seen: why, for which account, about which Stripe
    object (the notification is told once per object and reason)."""

    account_id: str
    reason: str
    message: str
    reference: str = ""


def session_account(session: dict[str, Any]) -> str | None:
    meta = session.get("metadata") or {}
    return str(meta.get("account") or session.get("client_reference_id") or "") or None


def purchase_command(session: dict[str, Any], payment_intent: dict[str, Any] | None = None,
                     invoice: dict[str, Any] | None = None) -> c.RecordPurchase | Notice:
    """The purchase a paid session records, or a ``Notice`` when what was paid is not what the
    session sold (nothing is credited: see docs/stripe.md, "An amount that does not match").

    Built from the session (and its PaymentIntent's charge and its invoice, for the receipt) only,
    so every event about the payment builds the same command. Pack prices are checked again by
    the domain; a custom amount carries the credits the session promised, so the domain refuses
    it if the card's rate no longer gives exactly that.
    """
    meta = session.get("metadata") or {}
    account = session_account(session)
    if account is None:
        raise ValueError("a ledger checkout session without an account")
    paid = session.get("amount_total")
    price_cents = int(meta.get("price_cents") or -1)
    if not isinstance(paid, int) or paid != price_cents:
        return Notice(account, "amount_mismatch",
                      f"checkout {session.get('id')} was paid {format_cents(paid) if isinstance(paid, int) else paid}"
                      f" but sold {meta.get('kind')} {meta.get('pack') or ''} for {format_cents(price_cents)}:"
                      " nothing was credited; refund or credit it by hand", str(session.get("id")))
    charge = (payment_intent or {}).get("latest_charge")
    kind: Literal["pack", "custom"] = "pack" if meta.get("kind") == "pack" else "custom"
    return c.RecordPurchase(
        account_id=account, kind=kind, pack_id=meta.get("pack") or None, cents_paid=paid,
        credits_ucr=int(meta["credits_ucr"]) if kind == "custom" else None,
        stripe_checkout_session=str(session["id"]), stripe_payment_intent=_id(session.get("payment_intent")),
        stripe_charge=_id(charge), stripe_customer=_id(session.get("customer")),
        stripe_invoice=_id(session.get("invoice")),
        receipt_url=charge.get("receipt_url") if isinstance(charge, dict) else None,
        invoice_pdf=(invoice or {}).get("invoice_pdf"),
        # No event id: two events about one payment must build the same command.
        idempotency_key=purchase_key(str(session["id"])),
    )


def failed_notice(session: dict[str, Any]) -> Notice:
    account = session_account(session) or ""
    return Notice(account, "payment_failed",
                  f"the payment of checkout {session.get('id')} failed: nothing was credited", str(session.get("id")))


@dataclass(frozen=True, slots=True)
class PurchaseFacts:
    """What a refund needs of the purchase it takes back from (its ``CreditsPurchased``)."""

    purchase_id: Any  # UUID
    cents_paid: int
    total_ucr: int  # credits + bonus: what the payment bought


def credits_for_cents(p: PurchaseFacts, cents: int) -> int:
    """The credits ``cents`` of the purchase's payment bought, rounded down (a refund rounds down).

    The bonus came with the payment, so a refund of x % of what was paid takes back x % of
    everything it bought, bonus included: a full refund takes the whole grant back, and a partial
    one never leaves a disproportionate bonus behind.
    """
    if p.cents_paid <= 0:
        return 0
    return floor_ucr(Fraction(p.total_ucr * cents, p.cents_paid))


def cents_for_credits(p: PurchaseFacts, ucr: int) -> int:
    """The cents to give back for ``ucr`` of the purchase's credits, rounded down."""
    if p.total_ucr <= 0:
        return 0
    return p.cents_paid * ucr // p.total_ucr


def refund_command(account_id: str, p: PurchaseFacts, refund: dict[str, Any]) -> c.IssueRefund | None:
    """The clawback a Stripe refund records, or ``None`` (a failed or cancelled refund, or less
    than a µcr): the credits the ledger named in its metadata, else the share of the purchase the
    refunded cents were (``credits_for_cents``). ``force``: Stripe has already returned the money,
    so the credits go whatever the refund window says (an operator refunding through the API is
    held to the window before Stripe is called)."""
    if refund.get("status") not in ("succeeded", "pending"):
        return None
    meta = refund.get("metadata") or {}
    # A refund the ledger made names the credits it takes back (cents rounded down would leave
    # a few µcr of "all that is left" behind); one made in Stripe's dashboard is converted.
    named = str(meta.get("credits_ucr") or "")
    amount = int(named) if named.isdigit() else credits_for_cents(p, int(refund.get("amount") or 0))
    if amount <= 0:
        return None
    reason = (meta.get("reason")
              or f"refunded in Stripe ({refund.get('reason') or 'no reason given'})")
    return c.IssueRefund(account_id=account_id, direction="clawback", purchase_id=p.purchase_id, amount_ucr=amount,
                         reason=str(reason)[:500], force=True, idempotency_key=refund_key(str(refund["id"])))


def dispute_commands(account_id: str, p: PurchaseFacts, dispute: dict[str, Any]) -> list[c.Command]:
    """The dispute recorded (always first, under the key ``created`` uses, so a ``closed`` that
    arrives first still finds it), then closed when Stripe says it is: ``won`` gives the frozen
    credits back; ``lost`` keeps them gone. An inquiry closed without a chargeback
    (``warning_closed``) returned no money, so it counts as won."""
    dispute_id = str(dispute["id"])
    found: list[c.Command] = [c.RecordDispute(
        account_id=account_id, purchase_id=p.purchase_id, dispute_id=dispute_id,
        reason=str(dispute.get("reason") or "unknown")[:500], idempotency_key=dispute_key(dispute_id, "opened"))]
    status = dispute.get("status")
    if status in ("won", "lost", "warning_closed"):
        found.append(c.CloseDispute(account_id=account_id, purchase_id=p.purchase_id, dispute_id=dispute_id,
                                    outcome="lost" if status == "lost" else "won",
                                    idempotency_key=dispute_key(dispute_id, "closed")))
    return found


def payment_intent_of(obj: dict[str, Any]) -> str | None:
    """The PaymentIntent a charge or dispute is about."""
    return _id(obj.get("payment_intent"))
