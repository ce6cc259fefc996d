"""``Client``: the ledger's HTTP API over ``httpx.Client``, a thin transport for the flows in ``exchange``.

Its namespaces (``credits``, ``usage``, ...) are one-line adapters from a method's arguments to a
``Call`` (``calls``), run by ``Client._run``.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Self, TypeVar, overload
from uuid import UUID

import httpx

from ledger.client import analytics, billing, calls, export, history
from ledger.client.analytics import Analytics, ExecutionCost, FlowCost, UsageReport
from ledger.client.billing import (
    AutoRefill,
    CardSetup,
    CheckoutSession,
    InvoicePage,
    PlanChange,
    PortalSession,
    Refund,
)
from ledger.client.calls import Attributes, Call, Quantities
from ledger.client.errors import error_from_response
from ledger.client.exchange import ClientCore, Done, Flow, Outcome, Sleep, advance
from ledger.client.export import Bound, Exported, Target
from ledger.client.history import Activity, ActivityPage, DeploymentUsagePage, Execution, ExecutionPage
from ledger.client.models import (
    Account,
    Balance,
    Charge,
    Deployment,
    Entry,
    EntryPage,
    Estimate,
    Grant,
    Me,
    Release,
    Reservation,
    Settlement,
    UsageEvent,
    UsageResult,
)

T = TypeVar("T")


class Client(ClientCore[httpx.BaseTransport]):
    """The ledger's HTTP API, synchronously.

    >>> with Client("https://ledger.example.com", "cl_live_...") as client:  # doctest: +SKIP
    ...     client.credits.balance().available
    '12.500000'

    ``account_id`` defaults to the key's own account (asked once, lazily, with ``GET /v1/me``);
    an operator key must name one, here or with ``client.for_account(id)``.

    ``max_retries`` bounds the retries after a connection error or a 5xx. A 429 raises
    ``RateLimitedError`` at once (``retry_after``: seconds to wait) unless
    ``retry_on_rate_limit=N``: then the client waits the server's ``Retry-After`` and tries
    again, at most N times per call, and raises at once when the server asks for more than
    ``max_retry_after_s`` (so one call waits at most N × ``max_retry_after_s``).
    """

    _http: httpx.Client

    def _open(self, transport: httpx.BaseTransport | None, **options: Any) -> httpx.Client:
        return httpx.Client(transport=transport, **options)

    def _namespaces(self) -> None:
        self.credits = Credits(self)
        self.usage = Usage(self)
        self.reservations = Reservations(self)
        self.deployments = Deployments(self)
        self.coupons = Coupons(self)
        self.accounts = Accounts(self)
        self.billing = Billing(self)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def me(self) -> Me:
        """Who this key is: its id, role and account (``None`` for an operator key)."""
        return self._run(calls.me())

    def gate(self, min_credits: str | Decimal | int | None = None, *, min_ucr: int | None = None) -> bool:
        """Whether the available balance is at least ``min_credits`` (or ``min_ucr`` µcr).

        >>> if client.gate("5"):  # doctest: +SKIP
        ...     run_paid_phase()
        """
        return self._drive(self._gate(min_credits, min_ucr))

    def _run(self, call: Call[T]) -> T:
        return self._drive(self._exchange(call))

    def _drive(self, flow: Flow[T]) -> T:
        """Run ``flow`` to its end: send what it asks, sleep when it says."""
        outcome: Outcome = None
        while not isinstance(step := advance(flow, outcome), Done):
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                outcome = None
                continue
            try:
                outcome = self._http.send(step.request)
            except httpx.TransportError as exc:
                outcome = exc  # thrown into the flow, where it waits for the answer
        return step.value


class _Namespace:
    def __init__(self, client: Client) -> None:
        self._c = client


class Credits(_Namespace):
    def balance(self) -> Balance:
        """The exact balance: ``balance``, ``available``, ``reserved``, ``debt``, by source, ..."""
        return self._c._run(calls.balance())

    def history(self, limit: int = 50, offset: int = 0, *, cursor: str | None = None) -> EntryPage:
        """One page of ledger entries, newest first."""
        return self._c._run(calls.ledger(limit, offset, cursor))

    def iter(self, page_size: int = 100) -> Iterator[Entry]:
        """Every entry, newest first, exactly those that existed at the first page (cursor-stable)."""
        first = calls.ledger(limit=page_size)

        def entries() -> Iterator[Entry]:
            call: Call[EntryPage] | None = first
            while call is not None:
                page = self._c._run(call)
                yield from page.data
                call = calls.next_page(page, page_size)
        return entries()

    def executions(self, limit: int = 50, offset: int = 0, *, cursor: str | None = None) -> ExecutionPage:
        """One page of the billing history (one row per usage entry), newest first."""
        return self._c._run(history.executions(limit, offset, cursor))

    def iter_executions(self, page_size: int = 100) -> Iterator[Execution]:
        """The whole billing history, newest first, each execution once (cursor-stable while usage goes on)."""
        first = history.executions(limit=page_size)

        def rows() -> Iterator[Execution]:
            call: Call[ExecutionPage] | None = first
            while call is not None:
                page = self._c._run(call)
                yield from page.data
                call = history.next_executions(page, page_size)
        return rows()

    def deployment_history(self, limit: int = 50, offset: int = 0) -> DeploymentUsagePage:
        """Per deployment, the hours charged and their credits, the most recently charged first."""
        return self._c._run(history.deployments(limit, offset))

    def activities(self, limit: int = 50, offset: int = 0, *, cursor: str | None = None,
                   kind: str | None = None) -> ActivityPage:
        """One page of the activity feed (executions, purchases, grants, refunds, ...), newest first."""
        return self._c._run(history.activities(limit, offset, cursor, kind))

    def iter_activities(self, page_size: int = 100, *, kind: str | None = None) -> Iterator[Activity]:
        """The whole activity feed (or one ``kind`` of it), newest first, cursor-stable."""
        first = history.activities(limit=page_size, kind=kind)

        def rows() -> Iterator[Activity]:
            call: Call[ActivityPage] | None = first
            while call is not None:
                page = self._c._run(call)
                yield from page.data
                call = history.next_activities(page, page_size, kind)
        return rows()

    def estimate(self, operation: str, quantity: int | None = None, quantities: Quantities | None = None, *,
                 attribution: Attributes | None = None) -> Estimate:
        """What ``operation`` would cost and whether the account could pay it now (never raises 402)."""
        return self._c._run(calls.estimate(operation, quantity, quantities, attribution))

    def export(self, from_: Bound = None, to: Bound = None) -> str:
        """Usage as CSV for accounting (``date,workflow,agent,model,input_tokens,output_tokens,credits,status``),
        oldest first, within ``[from_, to)`` (a date as ``to``: its whole day), as one text."""
        return self._c._run(export.export(from_, to))

    def export_to(self, file: Target, from_: Bound = None, to: Bound = None) -> Exported:
        """The same CSV streamed into ``file`` (a path, or a binary file) as it arrives; one attempt."""
        call = export.export(from_, to)
        request = call.request(self._c._http, self._c._drive(self._c._account()))
        try:
            response = self._c._http.send(request, stream=True)
            try:
                if not response.is_success:
                    response.read()
                    raise error_from_response(response)
                size = 0
                with export.target(file) as out:
                    for chunk in response.iter_bytes():
                        size += out.write(chunk)
                return export.exported(response, size)
            finally:
                response.close()
        except httpx.TransportError as exc:
            raise export.connection_failed(call, exc) from exc

    def usage(self, bucket: str = "day", by: str = "operation", *, start: datetime | str | None = None,
              end: datetime | str | None = None) -> UsageReport:
        """Usage per ``bucket`` (hour, day, week, month) and per ``by`` (operation, agent, member, flow,
        deployment, integration) over the hours starting in [start, end) (defaults: the server's)."""
        return self._c._run(analytics.usage(bucket, by, start, end))

    def analytics(self, days: int = 30) -> Analytics:
        """The 7, 14 or 30 days ending today: series, this period, daily average, projected month-end,
        by model and deployment, top requests, run-out and suggestions."""
        return self._c._run(analytics.analytics(days))

    def execution(self, execution_id: str) -> ExecutionCost:
        """One run's cost: flow, agent, credits by integration and total, by node, model and tool."""
        return self._c._run(analytics.execution(execution_id))

    def flow(self, name: str, *, start: datetime | str | None = None,
             end: datetime | str | None = None) -> FlowCost:
        """A flow's cost over [start, end) (default: the last 30 days): credits by integration and
        total, and its latest executions, each ``{flowId, executionId, credits}``."""
        return self._c._run(analytics.flow(name, start, end))


class Usage(_Namespace):
    def charge(self, operation: str, quantity: int | None = None, quantities: Quantities | None = None, *,
               attribution: Attributes | None = None, idempotency_key: str | None = None) -> Charge:
        """A gated charge; raises ``PaymentRequiredError`` when the account may not spend that much."""
        return self._c._run(calls.charge(operation, quantity, quantities, attribution, idempotency_key))

    @overload
    def record(self, events: Sequence[UsageEvent | Mapping[str, Any]], /) -> list[UsageResult]: ...

    @overload
    def record(self, operation: str, /, quantity: int | None = None, *, quantities: Quantities | None = None,
               attribution: Attributes | None = None, occurred_at: datetime | str | None = None,
               idempotency_key: str | None = None, account_id: str | None = None) -> UsageResult: ...

    def record(self, events: str | Sequence[UsageEvent | Mapping[str, Any]], /, quantity: int | None = None, *,
               quantities: Quantities | None = None, attribution: Attributes | None = None,
               occurred_at: datetime | str | None = None, idempotency_key: str | None = None,
               account_id: str | None = None) -> list[UsageResult] | UsageResult:
        """Metered usage (never 402), ``POST /v1/usage``.

        With a list of events: one result per event, in order (a rejected item never fails the
        others). Items that ``failed`` (not recorded for a transient reason) are sent again with
        the same keys, with backoff, up to ``max_retries`` times; a 503 is retried the same way.
        With one operation: its result, raising the item's error if it was rejected or failed.
        """
        return self._c._drive(self._c._record(events, quantity, quantities, attribution, occurred_at,
                                              idempotency_key, account_id))


class Reservations(_Namespace):
    def create(self, operation: str, quantity: int | None = None, quantities: Quantities | None = None, *,
               amount: str | None = None, amount_ucr: int | None = None, ttl_s: int | None = None,
               attribution: Attributes | None = None, idempotency_key: str | None = None) -> Reservation:
        """Hold credits for a long run (gated: may raise ``PaymentRequiredError``)."""
        return self._c._run(calls.reserve(operation, quantity, quantities, amount, amount_ucr, ttl_s, attribution,
                                          idempotency_key))

    def settle(self, reservation_id: str | UUID, quantity: int | None = None,
               quantities: Quantities | None = None, *, attribution: Attributes | None = None,
               idempotency_key: str | None = None) -> Settlement:
        """Charge what was used against the hold; the rest is released."""
        return self._c._run(calls.settle(reservation_id, quantity, quantities, attribution, idempotency_key))

    def release(self, reservation_id: str | UUID, *, idempotency_key: str | None = None) -> Release:
        """Release the whole hold."""
        return self._c._run(calls.release(reservation_id, idempotency_key))


class Deployments(_Namespace):
    def start(self, deployment_id: str, instance_type: str, *, idempotency_key: str | None = None) -> Deployment:
        """Start a deployment (gated): its first hour is charged now."""
        return self._c._run(calls.start_deployment(deployment_id, instance_type, idempotency_key))

    def stop(self, deployment_id: str, *, idempotency_key: str | None = None) -> Deployment:
        return self._c._run(calls.deployment_action(deployment_id, "stop", idempotency_key))

    def pause(self, deployment_id: str, *, reason: str | None = None,
              idempotency_key: str | None = None) -> Deployment:
        return self._c._run(calls.deployment_action(deployment_id, "pause", idempotency_key, reason))

    def resume(self, deployment_id: str, *, idempotency_key: str | None = None) -> Deployment:
        """Resume: free while paid time is left; once it is used up, the next hour is charged now (gated)."""
        return self._c._run(calls.deployment_action(deployment_id, "resume", idempotency_key))

    def list(self) -> builtins.list[Deployment]:
        return self._c._run(calls.deployments())


class Coupons(_Namespace):
    def redeem(self, code: str, *, idempotency_key: str | None = None) -> Grant:
        """Redeem a coupon code (admin key); a refused code raises ``InvalidRequestError``."""
        return self._c._run(calls.redeem(code, idempotency_key))


class Accounts(_Namespace):
    def get(self, account_id: str | None = None) -> Account:
        """The account (this client's unless ``account_id`` is given)."""
        return self._c._run(calls.account(account_id))


class Billing(_Namespace):
    """Money through Stripe: checkout and the billing portal (admin key), invoices, refunds (operator key)."""

    def checkout(self, pack: str | None = None, *, credits_amount: str | int | None = None, success_url: str,
                 cancel_url: str, idempotency_key: str | None = None) -> CheckoutSession:
        """A Stripe Checkout Session for a pack or ``credits_amount``; the same key returns the same session."""
        return self._c._run(billing.checkout(pack, credits_amount, success_url, cancel_url, idempotency_key))

    def portal(self, return_url: str | None = None) -> PortalSession:
        """A Stripe billing portal session (update the saved card)."""
        return self._c._run(billing.portal(return_url))

    def invoices(self, limit: int = 50, *, cursor: str | None = None) -> InvoicePage:
        """Purchases, newest first, with Stripe's receipt and invoice links."""
        return self._c._run(billing.invoices(limit, cursor))

    def refund(self, purchase_id: str | UUID, *, reason: str, amount: str | int | None = None, force: bool = False,
               idempotency_key: str | None = None) -> Refund:
        """Refund a purchase through Stripe and take its credits back (operator key; at most what is left)."""
        return self._c._run(billing.refund(purchase_id, amount, reason, force, idempotency_key))

    def auto_refill(self, *, enabled: bool, threshold: str | int, amount: str | int, daily_cap: str | int | None = None,
                    runout_hours: int | None = None, idempotency_key: str | None = None) -> AutoRefill:
        """Below ``threshold``, buy ``amount`` with the saved card, once per crossing (admin key)."""
        return self._c._run(billing.auto_refill(enabled, threshold, amount, daily_cap, runout_hours, idempotency_key))

    def auto_refill_settings(self) -> AutoRefill:
        """The auto-refill rule, whether a card is saved, the breaker and the last refill asked."""
        return self._c._run(billing.auto_refill_settings())

    def save_card(self, *, success_url: str, cancel_url: str, idempotency_key: str | None = None) -> CardSetup:
        """A Stripe setup-mode Checkout where the customer saves the card refills charge (admin key)."""
        return self._c._run(billing.save_card(success_url, cancel_url, idempotency_key))

    def plan(self, plan: str, *, success_url: str | None = None, cancel_url: str | None = None,
             idempotency_key: str | None = None) -> PlanChange:
        """Move to ``plan`` through Stripe (admin key): a paid plan opens a subscription Checkout
        (``success_url``/``cancel_url``), or changes the live subscription from the period's end;
        the free plan cancels it at the period's end."""
        return self._c._run(billing.plan(plan, success_url, cancel_url, idempotency_key))
