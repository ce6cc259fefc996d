"""``AsyncClient``: the same API over ``httpx.AsyncClient``, a thin transport for the flows in ``exchange``.

Its namespaces are ``Client``'s, awaitable; each method is a one-line adapter to a ``Call``
(``calls``), run by ``AsyncClient._run``.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
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


class AsyncClient(ClientCore[httpx.AsyncBaseTransport]):
    """The ledger's HTTP API, for ``asyncio``: the same namespaces as ``Client``, awaitable.

    >>> async with AsyncClient("https://ledger.example.com", "cl_live_...") as client:  # doctest: +SKIP
    ...     async for entry in client.credits.iter():
    ...         print(entry.amount)
    """

    _http: httpx.AsyncClient

    def _open(self, transport: httpx.AsyncBaseTransport | None, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=transport, **options)

    def _namespaces(self) -> None:
        self.credits = AsyncCredits(self)
        self.usage = AsyncUsage(self)
        self.reservations = AsyncReservations(self)
        self.deployments = AsyncDeployments(self)
        self.coupons = AsyncCoupons(self)
        self.accounts = AsyncAccounts(self)
        self.billing = AsyncBilling(self)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def me(self) -> Me:
        return await self._run(calls.me())

    async def gate(self, min_credits: str | Decimal | int | None = None, *, min_ucr: int | None = None) -> bool:
        """Whether the available balance is at least ``min_credits`` (or ``min_ucr`` µcr).

        >>> if await client.gate("5"):  # doctest: +SKIP
        ...     await run_paid_phase()
        """
        return await self._drive(self._gate(min_credits, min_ucr))

    async def _run(self, call: Call[T]) -> T:
        return await self._drive(self._exchange(call))

    async def _drive(self, flow: Flow[T]) -> T:
        """Run ``flow`` to its end: send what it asks, sleep when it says."""
        outcome: Outcome = None
        while not isinstance(step := advance(flow, outcome), Done):
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                outcome = None
                continue
            try:
                outcome = await self._http.send(step.request)
            except httpx.TransportError as exc:
                outcome = exc  # thrown into the flow, where it waits for the answer
        return step.value


class _AsyncNamespace:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client


class AsyncCredits(_AsyncNamespace):
    async def balance(self) -> Balance:
        return await self._c._run(calls.balance())

    async def history(self, limit: int = 50, offset: int = 0, *, cursor: str | None = None) -> EntryPage:
        return await self._c._run(calls.ledger(limit, offset, cursor))

    def iter(self, page_size: int = 100) -> AsyncIterator[Entry]:
        """Every entry, newest first, exactly those that existed at the first page (cursor-stable)."""
        first = calls.ledger(limit=page_size)

        async def entries() -> AsyncIterator[Entry]:
            call: Call[EntryPage] | None = first
            while call is not None:
                page = await self._c._run(call)
                for entry in page.data:
                    yield entry
                call = calls.next_page(page, page_size)
        return entries()

    async def executions(self, limit: int = 50, offset: int = 0, *, cursor: str | None = None) -> ExecutionPage:
        return await self._c._run(history.executions(limit, offset, cursor))

    def iter_executions(self, page_size: int = 100) -> AsyncIterator[Execution]:
        """The whole billing history, newest first, each execution once (cursor-stable while usage goes on)."""
        first = history.executions(limit=page_size)

        async def rows() -> AsyncIterator[Execution]:
            call: Call[ExecutionPage] | None = first
            while call is not None:
                page = await self._c._run(call)
                for row in page.data:
                    yield row
                call = history.next_executions(page, page_size)
        return rows()

    async def deployment_history(self, limit: int = 50, offset: int = 0) -> DeploymentUsagePage:
        return await self._c._run(history.deployments(limit, offset))

    async def activities(self, limit: int = 50, offset: int = 0, *, cursor: str | None = None,
                         kind: str | None = None) -> ActivityPage:
        return await self._c._run(history.activities(limit, offset, cursor, kind))

    def iter_activities(self, page_size: int = 100, *, kind: str | None = None) -> AsyncIterator[Activity]:
        """The whole activity feed (or one ``kind`` of it), newest first, cursor-stable."""
        first = history.activities(limit=page_size, kind=kind)

        async def rows() -> AsyncIterator[Activity]:
            call: Call[ActivityPage] | None = first
            while call is not None:
                page = await self._c._run(call)
                for row in page.data:
                    yield row
                call = history.next_activities(page, page_size, kind)
        return rows()

    async def estimate(self, operation: str, quantity: int | None = None, quantities: Quantities | None = None, *,
                       attribution: Attributes | None = None) -> Estimate:
        return await self._c._run(calls.estimate(operation, quantity, quantities, attribution))

    async def export(self, from_: Bound = None, to: Bound = None) -> str:
        """Usage as CSV for accounting, oldest first, within ``[from_, to)``, as one text."""
        return await self._c._run(export.export(from_, to))

    async def export_to(self, file: Target, from_: Bound = None, to: Bound = None) -> Exported:
        """The same CSV streamed into ``file`` (a path, or a binary file) as it arrives; one attempt.
        Writing to the file blocks the loop briefly per chunk (local disk)."""
        call = export.export(from_, to)
        request = call.request(self._c._http, await self._c._drive(self._c._account()))
        try:
            response = await self._c._http.send(request, stream=True)
            try:
                if not response.is_success:
                    await response.aread()
                    raise error_from_response(response)
                size = 0
                with export.target(file) as out:
                    async for chunk in response.aiter_bytes():
                        size += out.write(chunk)
                return export.exported(response, size)
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            raise export.connection_failed(call, exc) from exc

    async def usage(self, bucket: str = "day", by: str = "operation", *, start: datetime | str | None = None,
              end: datetime | str | None = None) -> UsageReport:
        """Usage per ``bucket`` (hour, day, week, month) and per ``by`` (operation, agent, member, flow,
        deployment, integration) over the hours starting in [start, end) (defaults: the server's)."""
        return await self._c._run(analytics.usage(bucket, by, start, end))

    async def analytics(self, days: int = 30) -> Analytics:
        """The 7, 14 or 30 days ending today: series, this period, daily average, projected month-end,
        by model and deployment, top requests, run-out and suggestions."""
        return await self._c._run(analytics.analytics(days))

    async def execution(self, execution_id: str) -> ExecutionCost:
        """One run's cost: flow, agent, credits by integration and total, by node, model and tool."""
        return await self._c._run(analytics.execution(execution_id))

    async def flow(self, name: str, *, start: datetime | str | None = None,
             end: datetime | str | None = None) -> FlowCost:
        """A flow's cost over [start, end) (default: the last 30 days): credits by integration and
        total, and its latest executions, each ``{flowId, executionId, credits}``."""
        return await self._c._run(analytics.flow(name, start, end))


class AsyncUsage(_AsyncNamespace):
    async def charge(self, operation: str, quantity: int | None = None, quantities: Quantities | None = None, *,
                     attribution: Attributes | None = None, idempotency_key: str | None = None) -> Charge:
        return await self._c._run(calls.charge(operation, quantity, quantities, attribution, idempotency_key))

    @overload
    async def record(self, events: Sequence[UsageEvent | Mapping[str, Any]], /) -> list[UsageResult]: ...

    @overload
    async def record(self, operation: str, /, quantity: int | None = None, *,
                     quantities: Quantities | None = None, attribution: Attributes | None = None,
                     occurred_at: datetime | str | None = None, idempotency_key: str | None = None,
                     account_id: str | None = None) -> UsageResult: ...

    async def record(self, events: str | Sequence[UsageEvent | Mapping[str, Any]], /, quantity: int | None = None,
                     *, quantities: Quantities | None = None, attribution: Attributes | None = None,
                     occurred_at: datetime | str | None = None, idempotency_key: str | None = None,
                     account_id: str | None = None) -> list[UsageResult] | UsageResult:
        return await self._c._drive(self._c._record(events, quantity, quantities, attribution, occurred_at,
                                                    idempotency_key, account_id))


class AsyncReservations(_AsyncNamespace):
    async def create(self, operation: str, quantity: int | None = None, quantities: Quantities | None = None, *,
                     amount: str | None = None, amount_ucr: int | None = None, ttl_s: int | None = None,
                     attribution: Attributes | None = None, idempotency_key: str | None = None) -> Reservation:
        return await self._c._run(calls.reserve(operation, quantity, quantities, amount, amount_ucr, ttl_s,
                                                attribution, idempotency_key))

    async def settle(self, reservation_id: str | UUID, quantity: int | None = None,
                     quantities: Quantities | None = None, *, attribution: Attributes | None = None,
                     idempotency_key: str | None = None) -> Settlement:
        return await self._c._run(calls.settle(reservation_id, quantity, quantities, attribution, idempotency_key))

    async def release(self, reservation_id: str | UUID, *, idempotency_key: str | None = None) -> Release:
        return await self._c._run(calls.release(reservation_id, idempotency_key))


class AsyncDeployments(_AsyncNamespace):
    async def start(self, deployment_id: str, instance_type: str, *,
                    idempotency_key: str | None = None) -> Deployment:
        return await self._c._run(calls.start_deployment(deployment_id, instance_type, idempotency_key))

    async def stop(self, deployment_id: str, *, idempotency_key: str | None = None) -> Deployment:
        return await self._c._run(calls.deployment_action(deployment_id, "stop", idempotency_key))

    async def pause(self, deployment_id: str, *, reason: str | None = None,
                    idempotency_key: str | None = None) -> Deployment:
        return await self._c._run(calls.deployment_action(deployment_id, "pause", idempotency_key, reason))

    async def resume(self, deployment_id: str, *, idempotency_key: str | None = None) -> Deployment:
        return await self._c._run(calls.deployment_action(deployment_id, "resume", idempotency_key))

    async def list(self) -> builtins.list[Deployment]:
        return await self._c._run(calls.deployments())


class AsyncCoupons(_AsyncNamespace):
    async def redeem(self, code: str, *, idempotency_key: str | None = None) -> Grant:
        return await self._c._run(calls.redeem(code, idempotency_key))


class AsyncAccounts(_AsyncNamespace):
    async def get(self, account_id: str | None = None) -> Account:
        return await self._c._run(calls.account(account_id))


class AsyncBilling(_AsyncNamespace):
    async def checkout(self, pack: str | None = None, *, credits_amount: str | int | None = None,
                       success_url: str, cancel_url: str, idempotency_key: str | None = None) -> CheckoutSession:
        return await self._c._run(billing.checkout(pack, credits_amount, success_url, cancel_url, idempotency_key))

    async def portal(self, return_url: str | None = None) -> PortalSession:
        return await self._c._run(billing.portal(return_url))

    async def invoices(self, limit: int = 50, *, cursor: str | None = None) -> InvoicePage:
        return await self._c._run(billing.invoices(limit, cursor))

    async def refund(self, purchase_id: str | UUID, *, reason: str, amount: str | int | None = None,
                     force: bool = False, idempotency_key: str | None = None) -> Refund:
        return await self._c._run(billing.refund(purchase_id, amount, reason, force, idempotency_key))

    async def auto_refill(self, *, enabled: bool, threshold: str | int, amount: str | int,
                          daily_cap: str | int | None = None, runout_hours: int | None = None,
                          idempotency_key: str | None = None) -> AutoRefill:
        return await self._c._run(billing.auto_refill(enabled, threshold, amount, daily_cap, runout_hours,
                                                      idempotency_key))

    async def auto_refill_settings(self) -> AutoRefill:
        return await self._c._run(billing.auto_refill_settings())

    async def save_card(self, *, success_url: str, cancel_url: str, idempotency_key: str | None = None) -> CardSetup:
        return await self._c._run(billing.save_card(success_url, cancel_url, idempotency_key))

    async def plan(self, plan: str, *, success_url: str | None = None, cancel_url: str | None = None,
                   idempotency_key: str | None = None) -> PlanChange:
        return await self._c._run(billing.plan(plan, success_url, cancel_url, idempotency_key))
