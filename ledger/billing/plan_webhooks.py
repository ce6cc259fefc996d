"""The webhook's work for plans: record what Stripe says of a subscription, grant a paid invoice's
allowance. The mapping is pure (``ledger.billing.subscription_events``); here are the Stripe
look-up and the ledger call.

A subscription is retrieved from Stripe rather than taken from the event, so deliveries out of
order record the latest state (see the mapping's keys). An invoice is taken from the event: it
is final once paid. A command the ledger refuses (an invoice for a period already over, a plan
the card no longer has) is a notice for a person, answered 200 so Stripe stops resending it; an
outage is raised (503, Stripe resends later). So is a second live subscription for one account
(two checkouts paid before the first one's webhook arrived): it is recorded, and both bill.
"""

from __future__ import annotations

import logging
from typing import Any

from ledger import commands as c
from ledger import rows
from ledger.billing.gateway import StripeGateway
from ledger.billing.subscription_events import PlanKind, allowance_command, subscription_command
from ledger.errors import LedgerError, UnknownAccount
from ledger.payments import ENDED
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
    other = await _other_live_subscription(ledger, cmd) if isinstance(cmd, c.RecordSubscription) else None
    try:
        outcome = await ledger.execute(cmd)
    except LedgerError as exc:
        if exc.transient:
            raise
        log.warning("Stripe %s for account %r refused: %s", what, cmd.account_id, exc.detail)
        return "notice", f"{what}: {getattr(exc, 'reason', exc.type_slug)}: {exc.detail}", cmd.account_id
    if outcome.replayed:
        return "replayed", what, cmd.account_id
    if isinstance(cmd, c.RecordSubscription) and other is not None and outcome.events:
        # Two checkouts paid before the first one's webhook arrived: both bill. A person cancels one.
        log.warning("account %r has two live Stripe subscriptions: %s and %s", cmd.account_id, other,
                    cmd.stripe_subscription)
        return "notice", (f"{what}: two_subscriptions: the account also has live subscription {other};"
                          " cancel one in Stripe"), cmd.account_id
    return ("recorded" if outcome.events else "unchanged"), what, cmd.account_id


async def _other_live_subscription(ledger: Ledger, cmd: c.RecordSubscription) -> str | None:
    """Another live subscription the ledger knows for the account, when ``cmd`` records a live one."""
    if cmd.status in ENDED:
        return None
    try:
        known = rows.subscription((await ledger.account(cmd.account_id)).settings)
    except UnknownAccount:
        return None  # the command is refused below, with its reason
    if known is None or not known.live or known.stripe_subscription == cmd.stripe_subscription:
        return None
    return known.stripe_subscription
