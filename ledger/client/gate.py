"""``gate``: let a workflow skip its paid phases when the account cannot cover them.

>>> from ledger.client import Client, gate
>>> with Client("https://ledger.example.com", "cl_live_...") as client:  # doctest: +SKIP
...     if client.gate("5"):                     # a plain bool: available >= 5 credits
...         summarise_with_gpt4o()
...     with gate(client, "5") as ok:            # the same check as a context manager
...         if ok:
...             generate_images()
...     with gate(client, min_ucr=250_000) as ok:  # or a threshold in integer µcr
...         ...

With an ``AsyncClient``: ``if await client.gate("5")``, ``if await gate(client, "5")`` or
``async with gate(client, "5") as ok``.

The check reads the exact available balance (balance minus reservations) once per gate; it is a
hint for skipping work, not a hold: a charge inside the block may still raise
``PaymentRequiredError`` if something else spent the credits meanwhile (use
``client.reservations.create`` to hold them).
"""

from __future__ import annotations

from collections.abc import Generator
from decimal import Decimal
from types import TracebackType
from typing import Any, overload

from ledger.client.async_client import AsyncClient
from ledger.client.models import Balance, to_ucr
from ledger.client.sync_client import Client

__all__ = ["AsyncGate", "Gate", "gate"]


class _GateBase:
    def __init__(self, min_credits: str | Decimal | int | None, min_ucr: int | None) -> None:
        #: The threshold in µcr: the gate opens when ``available_ucr >= min_ucr``.
        self.min_ucr = to_ucr(min_credits, ucr=min_ucr)
        #: The balance the gate read (``None`` until it is checked).
        self.balance: Balance | None = None

    def _decide(self, balance: Balance) -> bool:
        self.balance = balance
        return balance.available_ucr >= self.min_ucr

    def __repr__(self) -> str:
        state = "unchecked" if self.balance is None else f"available_ucr={self.balance.available_ucr}"
        return f"{type(self).__name__}(min_ucr={self.min_ucr}, {state})"


class Gate(_GateBase):
    """Whether a ``Client``'s account may run a paid phase: ``bool(gate)`` or ``with gate as ok``."""

    def __init__(self, client: Client, min_credits: str | Decimal | int | None = None, *,
                 min_ucr: int | None = None) -> None:
        super().__init__(min_credits, min_ucr)
        self._client = client
        self._ok: bool | None = None

    def check(self) -> bool:
        """Read the balance (once) and say whether ``available >= min``."""
        if self._ok is None:
            self._ok = self._decide(self._client.credits.balance())
        return self._ok

    def __bool__(self) -> bool:
        return self.check()

    def __enter__(self) -> bool:
        return self.check()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None


class AsyncGate(_GateBase):
    """The ``AsyncClient`` gate: ``await gate`` or ``async with gate as ok``."""

    def __init__(self, client: AsyncClient, min_credits: str | Decimal | int | None = None, *,
                 min_ucr: int | None = None) -> None:
        super().__init__(min_credits, min_ucr)
        self._client = client
        self._ok: bool | None = None

    async def check(self) -> bool:
        """Read the balance (once) and say whether ``available >= min``."""
        if self._ok is None:
            self._ok = self._decide(await self._client.credits.balance())
        return self._ok

    def __await__(self) -> Generator[Any, None, bool]:
        return self.check().__await__()

    def __bool__(self) -> bool:
        raise TypeError("an async gate must be awaited: `if await gate(client, ...)`")

    async def __aenter__(self) -> bool:
        return await self.check()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        return None


@overload
def gate(client: Client, min_credits: str | Decimal | int | None = None, *, min_ucr: int | None = None) -> Gate: ...


@overload
def gate(client: AsyncClient, min_credits: str | Decimal | int | None = None, *,
         min_ucr: int | None = None) -> AsyncGate: ...


def gate(client: Client | AsyncClient, min_credits: str | Decimal | int | None = None, *,
         min_ucr: int | None = None) -> Gate | AsyncGate:
    """A gate on ``client``'s available balance: at least ``min_credits`` (a decimal string such as
    ``"5"`` or ``"0.25"``, a ``Decimal``, or whole credits as an ``int``) or ``min_ucr`` µcr.

    >>> with gate(client, "5") as ok:  # doctest: +SKIP
    ...     if ok:
    ...         run_paid_phase()
    """
    if isinstance(client, AsyncClient):
        return AsyncGate(client, min_credits, min_ucr=min_ucr)
    return Gate(client, min_credits, min_ucr=min_ucr)
