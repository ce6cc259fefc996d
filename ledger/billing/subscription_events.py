"""Stripe's subscription and invoice events -> the plan's ledger commands. Pure: no I/O.

- ``customer.subscription.created|updated|deleted`` and a subscription-mode
  ``checkout.session.completed`` -> ``RecordSubscription``, built from the subscription *as
  Stripe has it now* (the webhook retrieves it; the event's copy may be stale), plan and account
  from its metadata. Key: ``stripe:subscription:{sub}:{event id}:{digest of the state}``.
- ``invoice.paid`` of a subscription -> ``GrantPlanAllowance`` for the period of the invoice's
  subscription line, the plan from the metadata the invoice snapshotted when it was finalized.
  Key: ``stripe:invoice:{invoice id}``: one invoice, one allowance, whatever the deliveries.

Why that subscription key: Stripe does not order deliveries, so a late ``updated`` must not roll
the ledger back. The webhook records the state it retrieves, so a stale event records the
current state again, which the domain drops as "nothing new". The event id makes a later change
a new command even when it returns to an earlier state (cancel, then resume: the earlier
state's key would replay). The digest keeps one key meaning one request: a redelivery that
retrieves a state changed since is another command, not a conflict; one that retrieves the
same state is a replay.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from ledger import commands as c
from ledger.billing.checkout import SOURCE

PlanKind = Literal["subscription", "plan_invoice"]

#: The statuses ``RecordSubscription`` takes (Stripe's, as of the API version the SDK pins).
_STATUSES: frozenset[str] = frozenset(get_args(c.RecordSubscription.model_fields["status"].annotation))


def invoice_key(invoice_id: str) -> str:
    return f"stripe:invoice:{invoice_id}"


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        return str(value["id"]) if value.get("id") else None
    return str(value) if value else None


def _ours(meta: Any) -> bool:
    return isinstance(meta, dict) and meta.get("source") == SOURCE and bool(meta.get("account")) \
        and bool(meta.get("plan"))


def plan_action(event: dict[str, Any]) -> tuple[PlanKind, dict[str, Any]] | None:
    """Whether ``event`` is about a plan this ledger sold, and what the webhook works from:
    ``("subscription", {"subscription", "event"})`` (retrieve it, record it) or
    ``("plan_invoice", invoice)``. ``None``: not a plan's event (the caller goes on)."""
    etype = str(event.get("type", ""))
    obj = (event.get("data") or {}).get("object") or {}
    event_id = str(event.get("id") or "")
    if etype.startswith("customer.subscription."):
        if _ours(obj.get("metadata")) and obj.get("id"):
            return "subscription", {"subscription": str(obj["id"]), "event": event_id}
        return None
    if etype == "checkout.session.completed" and obj.get("mode") == "subscription":
        sub = _id(obj.get("subscription"))
        if sub and _ours(obj.get("metadata")):
            return "subscription", {"subscription": sub, "event": event_id}
        return None
    if etype == "invoice.paid" and subscription_of(obj) and _ours(_invoice_metadata(obj)):
        return "plan_invoice", dict(obj)
    return None


def _at(ts: Any) -> datetime | None:
    return datetime.fromtimestamp(int(ts), UTC) if isinstance(ts, int) and ts > 0 else None


def period_end(sub: dict[str, Any]) -> datetime | None:
    """The current period's end: on the subscription (older API versions) or its first item."""
    end = sub.get("current_period_end")
    if end is None:
        items = (sub.get("items") or {}).get("data") or []
        end = items[0].get("current_period_end") if items else None
    return _at(end)


def subscription_command(sub: dict[str, Any], event_id: str) -> c.RecordSubscription | None:
    """What the ledger records of ``sub`` (as retrieved from Stripe); ``None`` for a subscription
    this ledger did not sell or a status it does not know."""
    meta = sub.get("metadata") or {}
    status = str(sub.get("status") or "")
    if not _ours(meta) or status not in _STATUSES:
        return None
    end = period_end(sub)
    cancel = bool(sub.get("cancel_at_period_end"))
    state = [str(meta["plan"]), status, end.isoformat() if end else None, cancel]
    digest = hashlib.sha256(json.dumps(state).encode()).hexdigest()[:16]
    return c.RecordSubscription.model_validate({  # validated: the status is one of _STATUSES
        "account_id": str(meta["account"]), "stripe_subscription": str(sub["id"]), "plan": str(meta["plan"]),
        "status": status, "current_period_end": end, "cancel_at_period_end": cancel,
        "idempotency_key": f"stripe:subscription:{sub['id']}:{event_id}:{digest}"})


def subscription_of(invoice: dict[str, Any]) -> str | None:
    """The subscription an invoice bills (``parent.subscription_details`` or, in older API
    versions, ``subscription``)."""
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return _id(details.get("subscription")) or _id(invoice.get("subscription"))


def _invoice_metadata(invoice: dict[str, Any]) -> dict[str, Any]:
    """The subscription's metadata as the invoice snapshotted it at finalization (so a plan changed
    since does not relabel an older invoice)."""
    details = (invoice.get("parent") or {}).get("subscription_details") or invoice.get("subscription_details") or {}
    meta = details.get("metadata")
    if isinstance(meta, dict) and meta:
        return meta
    line = _subscription_line(invoice)
    return dict((line or {}).get("metadata") or {})


def _subscription_line(invoice: dict[str, Any]) -> dict[str, Any] | None:
    for line in (invoice.get("lines") or {}).get("data") or []:
        parent = line.get("parent") or {}
        if parent.get("subscription_item_details") or line.get("type") == "subscription" or line.get("subscription"):
            return dict(line)
    return None


def allowance_command(invoice: dict[str, Any]) -> c.GrantPlanAllowance | None:
    """The allowance a paid subscription invoice grants, for its subscription line's period;
    ``None`` when the invoice is not paid or names no such period."""
    meta = _invoice_metadata(invoice)
    sub = subscription_of(invoice)
    line = _subscription_line(invoice)
    if invoice.get("status") != "paid" or not _ours(meta) or sub is None or line is None:
        return None
    period = line.get("period") or {}
    start, end = _at(period.get("start")), _at(period.get("end"))
    if start is None or end is None:
        return None
    return c.GrantPlanAllowance(
        account_id=str(meta["account"]), invoice_id=str(invoice["id"]), plan=str(meta["plan"]),
        period_start=start, period_end=end, stripe_subscription=sub, idempotency_key=invoice_key(str(invoice["id"])),
        cents_paid=paid if isinstance(paid := invoice.get("amount_paid"), int) else None,
        invoice_pdf=invoice.get("invoice_pdf") or None)
