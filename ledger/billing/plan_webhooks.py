"""The webhook's work for plans: record what Stripe says of a subscription, grant a paid invoice's
allowance. The mapping is pure (``ledger.billing.subscription_events``); here are the Stripe
look-up and the ledger call.

A subscription is retrieved from Stripe rather than taken from the event, so deliveries out of
order record the latest state (see the mapping's keys). An invoice is taken from the event: it
is final once paid. A command the ledger refuses (an invoice for a period already over, a plan
the card no longer has) is a notice for a person, answered 200 so Stripe stops resending it; an
outage is raised (503, Stripe resends later).
"""

from __future__ import annotations

import logging
from typing import Any

from ledger import commands as c
from ledger.billing.gateway import StripeGateway
from ledger.billing.subscription_events import PlanKind, allowance_command, subscription_command
from ledger.errors import LedgerError
from ledger.service import Ledger

log = logging.getLogger(__name__)

#: What a delivery did, as ``webhook.Handled`` takes it: outcome, detail, account.
Done = tuple[str, str, str | None]


async def act_on_plan(ledger: Ledger, gateway: StripeGateway, kind: PlanKind | str, obj: dict[str, Any]) -> Done:
    """``kind`` and ``obj`` as ``subscription_events.plan_action`` gave them."""
    if kind == "subscription":
        sub = await gateway.subscription(str(obj["subscription"]))
        cmd: c.Command | None = subscription_command(sub, str(obj.get("event") or ""))
        what = f"subscription {sub.get('id')} {sub.get('status')}"
    else:
        cmd = allowance_command(obj)
        what = f"allowance of invoice {obj.get('id')}"
    if cmd is None:
        return "ignored", f"{what}: nothing for the ledger", None
    try:
        outcome = await ledger.execute(cmd)
    except LedgerError as exc:
        if exc.transient:
            raise
        log.warning("Stripe %s for account %r refused: %s", what, cmd.account_id, exc.detail)
        return "notice", f"{what}: {getattr(exc, 'reason', exc.type_slug)}: {exc.detail}", cmd.account_id
    if outcome.replayed:
        return "replayed", what, cmd.account_id
    return ("recorded" if outcome.events else "unchanged"), what, cmd.account_id
