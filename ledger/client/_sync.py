"""The blocking client: ``Client(base_url, api_key)``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any

import httpx

from ledger.client import _core as core
from ledger.client import models as m
from ledger.client.errors import AccountRequiredError


class Client:
    """A client of one account's credits (an account key's own, or ``account_id=`` with an operator key).

    >>> with Client("http://localhost:8000", api_key="cl_live_...") as client:
    ...     client.credits.balance().available
    """

    def __init__(self, base_url: str, api_key: str, *, account_id: str | None = None, timeout: float = 10.0,
                 max_retries: int = 3, transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport,
                                  headers={"Authorization": f"Bearer {api_key}",
                                           "User-Agent": "credit-ledger-python/1"})
        self._account_id = account_id
        self.max_retries = max_retries
        self.accounts = _Accounts(self)
        self.credits = _Credits(self)
        self.usage = _Usage(self)
        self.reservations = _Reservations(self)
        self.deployments = _Deployments(self)
        self.coupons = _Coupons(self)

    # ---- plumbing ----------------------------------------------------------------------------

    def run(self, call: core.Call[core.M]) -> core.M:
        """Send ``call`` (retrying what may pass, with the same idempotency key) and parse the answer."""
        attempt = 0
        while True:
            outcome: httpx.Response | Exception
            try:
                outcome = self._http.send(call.request(self._http))
                if outcome.status_code < 400:
                    return core.parse(call, outcome)
            except httpx.TransportError as exc:
                outcome = exc
            wait = core.should_retry(attempt, self.max_retries, outcome)
            if wait is None:
                raise core.final_error(outcome)
            time.sleep(wait)
            attempt += 1

    @property
    def account_id(self) -> str:
        """The account this client acts on (asked of the server once for an account key)."""
        if self._account_id is None:
            me = self.run(core.read("/v1/me", m.Me))
            if me.account_id is None:
                raise AccountRequiredError("an operator key acts on every account: pass account_id= or use "
                                           "client.for_account(id)")
            self._account_id = me.account_id
        return self._account_id

    def for_account(self, account_id: str) -> Client:
        """The same connection and key, acting on ``account_id`` (for operator keys)."""
        other = object.__new__(Client)
        other.__dict__.update(self.__dict__)
        other._account_id = account_id
        for name, cls in (("accounts", _Accounts), ("credits", _Credits), ("usage", _Usage),
                          ("reservations", _Reservations), ("deployments", _Deployments), ("coupons", _Coupons)):
            setattr(other, name, cls(other))
        return other

    def path(self, tail: str = "") -> str:
        return core.account_path(self.account_id, tail)

    def gate(self, min_credits: str | Decimal | int | None = None, *, min_ucr: int | None = None) -> bool:
        """Whether the available balance covers ``min_credits``: skip a paid phase when it does not.

        >>> if client.gate("5"):
        ...     run_the_expensive_step()
        """
        return self.credits.balance().available_ucr >= m.to_ucr(min_credits, ucr=min_ucr)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class _Part:
    def __init__(self, client: Client) -> None:
        self._c = client


class _Accounts(_Part):
    def get(self) -> m.Account:
        return self._c.run(core.read(self._c.path(), m.Account))


class _Credits(_Part):
    def balance(self) -> m.Balance:
        """The exact balance, by source, with the last 20 entries."""
        return self._c.run(core.read(self._c.path("/balance"), m.Balance))

    def history(self, limit: int = 50, offset: int = 0, *, cursor: str | None = None) -> m.EntryPage:
        """One page of ledger entries, newest first."""
        return self._c.run(core.read(self._c.path("/ledger"), m.EntryPage,
                                     {"limit": limit, "offset": offset or None, "cursor": cursor}))

    def iter(self, page_size: int = 100) -> Iterator[m.Entry]:
        """Every entry, newest first, page by page; entries appended meanwhile never shift it."""
        cursor: str | None = None
        while True:
            page = self.history(page_size, cursor=cursor)
            yield from page.data
            if not page.has_more or page.next_cursor is None:
                return
            cursor = page.next_cursor

    def estimate(self, operation: str, quantity: int | None = None, *, quantities: Mapping[str, int] | None = None,
                 attribution: m.Attribution | None = None) -> m.Estimate:
        """What ``operation`` would cost and whether the account could pay it now (never a 402)."""
        return self._c.run(core.Call("POST", self._c.path("/estimate"), m.Estimate, json=core.body(
            operation=operation, quantity=quantity, quantities=dict(quantities) if quantities else None,
            attribution=attribution)))


class _Usage(_Part):
    def charge(self, operation: str, quantity: int | None = None, *, quantities: Mapping[str, int] | None = None,
               attribution: m.Attribution | None = None, idempotency_key: str | None = None) -> m.Charge:
        """A gated charge; raises ``PaymentRequiredError`` (nothing recorded) when it cannot be paid."""
        return self._c.run(core.write("POST", self._c.path("/charges"), m.Charge, core.body(
            operation=operation, quantity=quantity, quantities=dict(quantities) if quantities else None,
            attribution=attribution), idempotency_key))

    def record(self, events: Sequence[m.UsageEvent] | str, quantity: int | None = None, *,
               quantities: Mapping[str, int] | None = None, attribution: m.Attribution | None = None,
               idempotency_key: str | None = None) -> list[m.UsageResult]:
        """Metered usage (never refused for lack of credits): a batch, or one ``operation``."""
        return self._c.run(core.Call("POST", "/v1/usage", core.UsageResults, json={"events": core.usage_items(
            self._c.account_id, events, quantity, quantities, attribution, idempotency_key)})).results


class _Reservations(_Part):
    def create(self, operation: str, quantity: int | None = None, *, quantities: Mapping[str, int] | None = None,
               amount: str | None = None, amount_ucr: int | None = None, ttl_s: int | None = None,
               attribution: m.Attribution | None = None, idempotency_key: str | None = None) -> m.Reservation:
        return self._c.run(core.write("POST", self._c.path("/reservations"), m.Reservation, core.body(
            operation=operation, quantity=quantity, quantities=dict(quantities) if quantities else None,
            amount=amount, amount_ucr=amount_ucr, ttl_s=ttl_s, attribution=attribution), idempotency_key))

    def settle(self, reservation_id: str | uuid.UUID, quantity: int | None = None, *,
               quantities: Mapping[str, int] | None = None, idempotency_key: str | None = None) -> m.Settlement:
        return self._c.run(core.write("POST", self._c.path(f"/reservations/{reservation_id}/settle"),
                                      m.Settlement, core.body(quantity=quantity, quantities=dict(quantities)
                                                              if quantities else None), idempotency_key))

    def release(self, reservation_id: str | uuid.UUID, *, idempotency_key: str | None = None) -> m.Release:
        return self._c.run(core.write("POST", self._c.path(f"/reservations/{reservation_id}/release"),
                                      m.Release, None, idempotency_key))


class _Deployments(_Part):
    def start(self, deployment_id: str, instance_type: str, *, idempotency_key: str | None = None) -> m.Deployment:
        """Start (gated): the first hour is charged now."""
        return self._c.run(core.write("POST", self._c.path("/deployments"), m.Deployment, {
            "deployment_id": deployment_id, "instance_type": instance_type}, idempotency_key))

    def _action(self, deployment_id: str, action: str, key: str | None, body: Any = None) -> m.Deployment:
        return self._c.run(core.write("POST", self._c.path(f"/deployments/{deployment_id}/{action}"),
                                      m.Deployment, body, key))

    def stop(self, deployment_id: str, *, idempotency_key: str | None = None) -> m.Deployment:
        return self._action(deployment_id, "stop", idempotency_key)

    def pause(self, deployment_id: str, *, reason: str | None = None,
              idempotency_key: str | None = None) -> m.Deployment:
        return self._action(deployment_id, "pause", idempotency_key, core.body(reason=reason) or None)

    def resume(self, deployment_id: str, *, idempotency_key: str | None = None) -> m.Deployment:
        return self._action(deployment_id, "resume", idempotency_key)

    def list(self) -> list[m.Deployment]:
        return self._c.run(core.read(self._c.path("/deployments"), core.DeploymentList)).data


class _Coupons(_Part):
    def redeem(self, code: str, *, idempotency_key: str | None = None) -> m.Grant:
        return self._c.run(core.write("POST", self._c.path("/coupons"), m.Grant, {"code": code}, idempotency_key))
