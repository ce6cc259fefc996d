"""``POST /v1/stripe/webhook``'s work: verify the signature, then turn the event into ledger commands.

The mapping is pure (``ledger.billing.stripe_events``); here are the look-ups it needs from
Stripe and the ledger. A charge refunded (or disputed) before its purchase's event arrived records
the purchase first, found through Stripe (the Checkout Session of its PaymentIntent), with the key
the completion will use, so the two meet in the ledger's idempotency whatever their order.

Answers: a bad signature is a 400 and nothing is recorded; an outage (Stripe or the database) is a
503, so Stripe delivers the event again later; anything else is a 200, with what was done.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from ledger import commands as c
from ledger.billing.checkout import SOURCE
from ledger.billing.gateway import StripeGateway
from ledger.billing.payment_methods import accounts_of_customer, card_saved, default_card
from ledger.billing.plan_webhooks import act_on_plan
from ledger.billing.refills import outcome_command
from ledger.billing.stripe_events import (
    Action,
    Notice,
    PurchaseFacts,
    classify,
    dispute_commands,
    failed_notice,
    payment_intent_of,
    purchase_command,
    refund_command,
    session_account,
)
from ledger.errors import LedgerError, MalformedRequest
from ledger.events import CreditsPurchased
from ledger.service import Ledger

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Handled:
    """What one delivery did: ``recorded`` (something new), ``replayed`` (already recorded),
    ``ignored``, or ``notice`` (a payment that credits nothing and needs a person)."""

    outcome: str
    detail: str = ""
    account_id: str | None = None


class StripeWebhooks:
    def __init__(self, ledger: Ledger, gateway: StripeGateway) -> None:
        self.ledger = ledger
        self.gateway = gateway

    async def receive(self, payload: bytes, signature: str | None) -> Handled:
        """Verify, then act once (by the keys) on what the event says."""
        self.gateway.verify(payload, signature)
        try:
            event = json.loads(payload)
        except ValueError:
            raise MalformedRequest("the webhook body is not JSON") from None
        if not isinstance(event, dict):
            raise MalformedRequest("the webhook body is not a Stripe event")
        action = classify(event)
        handled = await self._act(action)
        log.info("Stripe %s %s: %s %s", event.get("type"), event.get("id"), handled.outcome, handled.detail)
        return handled

    async def _act(self, action: Action) -> Handled:
        if action.kind == "purchase":
            return await self.record_purchase(action.obj)
        if action.kind == "payment_failed":
            return await self._notice(failed_notice(action.obj))
        if action.kind == "refunded":
            return await self.record_refunds(action.obj)
        if action.kind in ("dispute_opened", "dispute_closed"):
            return await self.record_dispute(action.obj)
        if action.kind == "refill":
            return await self.record_refill(action.obj)
        if action.kind == "card_saved":
            return await self.record_card(action.obj)
        if action.kind == "customer_updated":
            return await self.record_default_card(action.obj, action.event_id)
        if action.kind in ("subscription", "plan_invoice"):
            return Handled(*await act_on_plan(self.ledger, self.gateway, action.kind, action.obj))
        return Handled("ignored", action.why)

    async def _notice(self, notice: Notice) -> Handled:
        """Tell the account (an alert: its notifications and webhooks), once per object and reason."""
        log.warning("Stripe payment for account %r needs attention (%s): %s", notice.account_id, notice.reason,
                    notice.message)
        reference = notice.reference or hashlib.sha256(notice.message.encode()).hexdigest()[:32]
        try:
            await self.ledger.execute(c.NotifyPaymentProblem(
                account_id=notice.account_id, reason=notice.reason[:100], reference=reference,
                message=notice.message[:1000], idempotency_key=f"stripe:notice:{reference}:{notice.reason}"))
        except LedgerError as exc:
            if exc.transient:
                raise  # Stripe delivers it again
            log.warning("the notice for account %r was not recorded: %s", notice.account_id, exc.detail)
        return Handled("notice", f"{notice.reason}: {notice.message}", notice.account_id)

    async def _purchase_command(self, session: dict[str, Any]) -> c.RecordPurchase | Notice:
        """The session's purchase, with the receipt of its charge and its invoice's PDF when Stripe has them."""
        pi_id = payment_intent_of(session)
        pi = await self.gateway.payment_intent(pi_id) if pi_id else None
        invoice_id = session.get("invoice")
        invoice = await self.gateway.invoice(str(invoice_id)) if isinstance(invoice_id, str) and invoice_id else None
        return purchase_command(session, pi, invoice)

    async def record_purchase(self, session: dict[str, Any]) -> Handled:
        """Credit a paid session once; a payment that is not what was sold credits nothing (a notice)."""
        found = await self._purchase(session)
        if isinstance(found, Notice):
            return await self._notice(found)
        facts, replayed = found
        return Handled("replayed" if replayed else "recorded", f"purchase {facts.purchase_id}",
                       session_account(session))

    async def _purchase(self, session: dict[str, Any]) -> tuple[PurchaseFacts, bool] | Notice:
        cmd = await self._purchase_command(session)
        if isinstance(cmd, Notice):
            return cmd
        try:
            outcome = await self.ledger.execute(cmd)
        except LedgerError as exc:
            if exc.transient:
                raise
            # Paid, and refused (a pack whose price changed, an account that is gone): a person decides.
            return Notice(cmd.account_id, getattr(exc, "reason", exc.type_slug), exc.detail)
        bought = next(e for e in outcome.events if isinstance(e, CreditsPurchased))
        facts = PurchaseFacts(bought.event_id, bought.cents_paid, bought.credits_ucr + bought.bonus_ucr)
        return facts, outcome.replayed

    async def purchase_of_payment(self, payment_intent: str) -> tuple[str, PurchaseFacts] | Notice | None:
        """The purchase a PaymentIntent paid for (recording it now if its event has not arrived);
        ``None`` when it was not a ledger checkout."""
        sessions = [s for s in await self.gateway.sessions_for_payment_intent(payment_intent)
                    if s.get("mode") == "payment" and (s.get("metadata") or {}).get("source") == SOURCE]
        if not sessions:
            return None
        session = sessions[0]
        if session.get("payment_status") != "paid":
            return Notice(session_account(session) or "", "not_paid",
                          f"checkout {session.get('id')} is not paid: nothing to take back")
        found = await self._purchase(session)
        if isinstance(found, Notice):
            return found
        return session_account(session) or "", found[0]

    async def _purchase_paid_by(self, obj: dict[str, Any]) -> tuple[str, PurchaseFacts] | Handled:
        pi = payment_intent_of(obj)
        if pi is None:
            return Handled("ignored", "no PaymentIntent")
        found = await self.purchase_of_payment(pi)
        if found is None:
            return Handled("ignored", f"{pi} did not pay for a ledger checkout")
        if isinstance(found, Notice):
            return await self._notice(found)
        return found

    async def record_refunds(self, charge: dict[str, Any]) -> Handled:
        """Take back, once per Stripe refund, the credits each refund of the charge paid back."""
        found = await self._purchase_paid_by(charge)
        if isinstance(found, Handled):
            return found
        account, facts = found
        pi = str(payment_intent_of(charge))
        commands: list[c.Command] = [cmd for r in await self.gateway.refunds_for_payment_intent(pi)
                                     if (cmd := refund_command(account, facts, r)) is not None]
        return await self._run(account, commands, f"refund(s) of purchase {facts.purchase_id}")

    async def record_dispute(self, dispute: dict[str, Any]) -> Handled:
        """Freeze what is left of the disputed purchase (and raise its alert); release it if won."""
        found = await self._purchase_paid_by(dispute)
        if isinstance(found, Handled):
            return found
        account, facts = found
        return await self._run(account, dispute_commands(account, facts, dispute),
                               f"dispute {dispute.get('id')} of purchase {facts.purchase_id}")

    async def record_refill(self, payment_intent: dict[str, Any]) -> Handled:
        """An auto-refill's outcome, built as the worker builds it (from the PaymentIntent with its
        charge expanded, so the two meet under one key): credits when paid, a failure when declined."""
        pi = await self.gateway.payment_intent(str(payment_intent["id"]))
        cmd = outcome_command(pi)
        if cmd is None:
            return Handled("ignored", f"{pi.get('id')} is {pi.get('status')}: its outcome comes later")
        return await self._run(cmd.account_id, [cmd], f"auto-refill {pi.get('id')}")

    async def _run(self, account: str, commands: list[c.Command], what: str) -> Handled:
        """Run the commands in order; a transient failure or a conflict (409) is raised so Stripe
        delivers again; any other refusal is a notice."""
        new = 0
        for cmd in commands:
            try:
                outcome = await self.ledger.execute(cmd)
            except LedgerError as exc:
                if exc.transient or exc.status == 409:
                    raise
                return await self._notice(Notice(account, getattr(exc, "reason", exc.type_slug), exc.detail))
            new += bool(outcome.events) and not outcome.replayed
        return Handled("recorded" if new else "replayed", f"{len(commands)} command(s): {what}", account)

    async def record_card(self, session: dict[str, Any]) -> Handled:
        """A setup-mode checkout saved a card for auto-refills."""
        intent = session.get("setup_intent")
        if not intent:
            return Handled("ignored", f"setup session {session.get('id')} names no SetupIntent")
        setup = intent if isinstance(intent, dict) else await self.gateway.setup_intent(str(intent))
        command = card_saved(session, setup)
        if command is None:
            return Handled("ignored", f"setup session {session.get('id')} saved no card")
        return await self._run(command.account_id, [command], f"card saved by {session.get('id')}")

    async def record_default_card(self, customer: dict[str, Any], event_id: str) -> Handled:
        """A customer's default card changed (the billing portal): the accounts it pays refill with it."""
        fresh = await self.gateway.customer(str(customer["id"]))
        accounts = await accounts_of_customer(self.ledger, fresh)
        commands = [cmd for a in accounts if (cmd := default_card(a, fresh, event_id)) is not None]
        if not commands:
            return Handled("ignored", f"{fresh.get('id')}: no account refills with it, or no default card")
        handled = [await self._run(cmd.account_id, [cmd], f"default card of {fresh['id']}") for cmd in commands]
        return handled[0] if len(handled) == 1 else Handled(
            "recorded" if any(h.outcome == "recorded" for h in handled) else "replayed",
            f"default card of {fresh['id']} for {len(handled)} accounts")
