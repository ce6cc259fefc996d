"""The two clients, where they were imported from before the split: ``Client`` (``sync_client``)
and ``AsyncClient`` (``async_client``), both thin transports for the flows in ``exchange`` over the
endpoints in ``calls``."""

from ledger.client.async_client import (
    AsyncAccounts,
    AsyncClient,
    AsyncCoupons,
    AsyncCredits,
    AsyncDeployments,
    AsyncReservations,
    AsyncUsage,
)
from ledger.client.sync_client import Accounts, Client, Coupons, Credits, Deployments, Reservations, Usage

__all__ = [
    "Accounts",
    "AsyncAccounts",
    "AsyncClient",
    "AsyncCoupons",
    "AsyncCredits",
    "AsyncDeployments",
    "AsyncReservations",
    "AsyncUsage",
    "Client",
    "Coupons",
    "Credits",
    "Deployments",
    "Reservations",
    "Usage",
]
