"""Rows and state: how each inline table's row becomes a state object, and back. Pure: no I/O.

Every read of ``accounts``, ``grants``, ``limits``, ``idempotency_keys``, ``reservations``,
``deployments`` and ``events`` that builds state goes through here: the store's load, ``verify``,
the balance read and the scheduler. Rows are decoded by column name, never by position: an asyncpg
``Record`` (including the composite rows migration 0005's types return) and a SQLAlchemy row's
``_mapping`` both answer ``row["name"]``. ``COMPOSITES`` names the composite types' attributes in
their declared order; a test holds PostgreSQL's types to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol
from uuid import UUID

from ledger.chain import canonical_json
from ledger.events import Event, event_from_row
from ledger.grants import Grant
from ledger.idempotency import StoredKey
from ledger.payments import NO_AUTO_REFILL, AutoRefill, Dispute, Payments, Purchase, RefillRequest, Subscription
from ledger.state import AccountState, Budget, Deployment, Limit, LimitKey, Reservation


class Row(Protocol):
    """A row read by column name: an asyncpg ``Record``, a SQLAlchemy ``RowMapping``, a dict."""

    def __getitem__(self, name: str, /) -> Any: ...


#: Columns of each table as its state object holds them, in the order the writes list them.
GRANT_COLUMNS = ("grant_id", "source", "original_ucr", "remaining_ucr", "expires_at", "granted_at")
LIMIT_COLUMNS = ("scope", "subject", "per_run_ucr", "per_day_ucr", "per_month_ucr")
KEY_COLUMNS = ("key", "request_hash", "first_version", "last_version")
RESERVATION_COLUMNS = ("reservation_id", "operation", "held_ucr", "status", "expires_at", "created_at")
DEPLOYMENT_COLUMNS = ("deployment_id", "instance_type", "hourly_ucr", "status", "hours_charged", "credits_ucr",
                      "segment_started_at", "used_us", "paused_reason", "started_at")
DISPUTE_COLUMNS = ("purchase_id", "dispute_id", "status", "frozen_ucr", "restored_ucr", "opened_at", "closed_at")
ACCOUNT_COLUMNS = ("account_id", "name", "plan", "status", "balance_ucr", "debt_ucr", "reserved_ucr", "spent_ucr",
                   "version", "last_hash", "settings", "opened_at")

#: The composite types ``credits_lock_and_load`` returns grants, limits and keys in (migration
#: 0005), with their attributes in declared order.
COMPOSITES: Mapping[str, tuple[str, ...]] = {
    "credits_grant_row": GRANT_COLUMNS,
    "credits_limit_row": LIMIT_COLUMNS,
    "credits_key_row": KEY_COLUMNS,
}

#: A deployment's running time used is stored as whole microseconds (``deployments.used_us``).
_MICROSECOND = timedelta(microseconds=1)


def columns(names: tuple[str, ...], alias: str = "") -> str:
    """``names`` as a select list, each prefixed ``alias.`` if given."""
    return ", ".join(f"{alias}.{n}" if alias else n for n in names)


# ---- rows to state ------------------------------------------------------------------------------

def grant(r: Row) -> Grant:
    return Grant(grant_id=r["grant_id"], source=r["source"], original_ucr=r["original_ucr"],
                 remaining_ucr=r["remaining_ucr"], expires_at=r["expires_at"], granted_at=r["granted_at"])


def limit(r: Row) -> tuple[LimitKey, Limit]:
    return (r["scope"], r["subject"]), Limit(per_run_ucr=r["per_run_ucr"], per_day_ucr=r["per_day_ucr"],
                                             per_month_ucr=r["per_month_ucr"])


def stored_key(r: Row) -> tuple[str, StoredKey]:
    return r["key"], StoredKey(bytes(r["request_hash"]), r["first_version"], r["last_version"])


def reservation(r: Row) -> Reservation:
    return Reservation(reservation_id=r["reservation_id"], operation=r["operation"], held_ucr=r["held_ucr"],
                       status=r["status"], expires_at=r["expires_at"], created_at=r["created_at"])


def deployment(r: Row) -> Deployment:
    return Deployment(
        deployment_id=r["deployment_id"], instance_type=r["instance_type"], hourly_ucr=r["hourly_ucr"],
        status=r["status"], hours_charged=r["hours_charged"], credits_ucr=r["credits_ucr"],
        segment_started_at=r["segment_started_at"], used=timedelta(microseconds=r["used_us"]),
        paused_reason=r["paused_reason"], started_at=r["started_at"])


def dispute(r: Row) -> Dispute | None:
    """A purchase's dispute from a ``disputes`` row (``None`` for a row of NULLs: an outer join's miss)."""
    if r["dispute_id"] is None:
        return None
    return Dispute(dispute_id=r["dispute_id"], status=r["status"], frozen_ucr=r["frozen_ucr"],
                   restored_ucr=r["restored_ucr"], opened_at=r["opened_at"], closed_at=r["closed_at"])


def allowance_cycle(settings: Mapping[str, Any]) -> int:
    """The last allowance cycle granted (``-1``: none yet), from ``accounts.settings``."""
    cycle: int = settings.get("allowance_cycle", -1)
    return cycle


def budget(settings: Mapping[str, Any]) -> Budget:
    """The account's budget, from ``accounts.settings``."""
    return Budget(**settings["budget"]) if "budget" in settings else Budget()


def auto_refill(settings: Mapping[str, Any]) -> AutoRefill:
    """The account's auto-refill, from ``accounts.settings`` (absent: never configured)."""
    if "auto_refill" not in settings:
        return NO_AUTO_REFILL
    fields = dict(settings["auto_refill"])
    last = fields.pop("last", None)
    return AutoRefill(**fields, last=None if last is None else RefillRequest(
        **{**last, "requested_at": datetime.fromisoformat(last["requested_at"])}))


def auto_refill_settings(r: AutoRefill) -> dict[str, Any] | None:
    """An auto-refill as ``accounts.settings`` holds it (``None``: never configured, not stored)."""
    if r == NO_AUTO_REFILL:
        return None
    out = {f: getattr(r, f) for f in AutoRefill.__dataclass_fields__ if f != "last"}
    out["last"] = None if r.last is None else {
        **{f: getattr(r.last, f) for f in RefillRequest.__dataclass_fields__},
        "requested_at": r.last.requested_at.isoformat()}
    return out


def subscription(settings: Mapping[str, Any]) -> Subscription | None:
    """The Stripe subscription paying the plan, from ``accounts.settings`` (absent: none ever)."""
    found = settings.get("subscription")
    if found is None:
        return None
    end = found["current_period_end"]
    return Subscription(**{**found, "current_period_end": None if end is None else datetime.fromisoformat(end)})


def subscription_settings(sub: Subscription | None) -> dict[str, Any] | None:
    """A subscription as ``accounts.settings`` holds it."""
    if sub is None:
        return None
    out = {f: getattr(sub, f) for f in Subscription.__dataclass_fields__}
    out["current_period_end"] = None if sub.current_period_end is None else sub.current_period_end.isoformat()
    return out


def stripe_pays_allowance(settings: Mapping[str, Any]) -> bool:
    """Whether a live Stripe subscription grants the account's allowance (not the calendar's job)."""
    sub = subscription(settings)
    return sub is not None and sub.live


def account(r: Row, purchases: Mapping[UUID, Purchase] | None = None, **collections: Any) -> AccountState:
    """An account's state from its ``accounts`` row; ``purchases`` and ``collections`` are the rest
    of its state (grants, limits, counters, ...), loaded as the caller needs them."""
    settings = r["settings"]
    return AccountState(
        account_id=r["account_id"], exists=True, name=r["name"], plan=r["plan"], status=r["status"],
        version=r["version"], last_hash=bytes(r["last_hash"]), opened_at=r["opened_at"], debt_ucr=r["debt_ucr"],
        reserved_ucr=r["reserved_ucr"], spent_ucr=r["spent_ucr"], allowance_cycle=allowance_cycle(settings),
        budget=budget(settings), payments=Payments({} if purchases is None else purchases, auto_refill(settings),
                                                   subscription(settings)),
        **collections)


# ---- state to rows (the store's writes) ---------------------------------------------------------

def grant_row(account_id: str, g: Grant) -> tuple[Any, ...]:
    """``account_id`` and ``GRANT_COLUMNS``."""
    return (account_id, g.grant_id, g.source, g.original_ucr, g.remaining_ucr, g.expires_at, g.granted_at)


def limit_row(account_id: str, key: LimitKey, lim: Limit) -> tuple[Any, ...]:
    """``account_id`` and ``LIMIT_COLUMNS``."""
    return (account_id, key[0], key[1], lim.per_run_ucr, lim.per_day_ucr, lim.per_month_ucr)


def reservation_row(account_id: str, r: Reservation) -> tuple[Any, ...]:
    """``account_id`` and ``RESERVATION_COLUMNS``."""
    return (account_id, r.reservation_id, r.operation, r.held_ucr, r.status, r.expires_at, r.created_at)


def deployment_row(account_id: str, d: Deployment) -> tuple[Any, ...]:
    """``account_id`` and ``DEPLOYMENT_COLUMNS``."""
    return (account_id, d.deployment_id, d.instance_type, d.hourly_ucr, d.status, d.hours_charged, d.credits_ucr,
            d.segment_started_at, d.used // _MICROSECOND, d.paused_reason, d.started_at)


def dispute_row(account_id: str, purchase_id: Any, d: Dispute) -> tuple[Any, ...]:
    """``account_id`` and ``DISPUTE_COLUMNS``."""
    return (account_id, purchase_id, d.dispute_id, d.status, d.frozen_ucr, d.restored_ucr, d.opened_at, d.closed_at)


def settings_json(s: AccountState) -> str:
    """``accounts.settings`` of a state, as JSON text."""
    return _settings_json(s.allowance_cycle, s.budget, s.payments.auto_refill, s.payments.subscription)


@lru_cache(maxsize=1024)
def _settings_json(cycle: int, b: Budget, refill: AutoRefill, sub: Subscription | None) -> str:
    # Cached: nearly every account shares a handful of (cycle, budget) pairs, no auto-refill and
    # no subscription, and every batch rewrites the settings of each account it touched.
    out: dict[str, Any] = {"allowance_cycle": cycle, "budget": budget_settings(b)}
    refill_settings = auto_refill_settings(refill)
    if refill_settings is not None:
        out["auto_refill"] = refill_settings
    if sub is not None:
        out["subscription"] = subscription_settings(sub)
    return canonical_json(out)


def budget_settings(b: Budget) -> dict[str, Any]:
    """A budget as ``accounts.settings`` holds it."""
    return {"monthly_limit_ucr": b.monthly_limit_ucr, "warn_pct": b.warn_pct, "critical_pct": b.critical_pct,
            "hard_stop": b.hard_stop}


# ---- events -------------------------------------------------------------------------------------

EVENT_FIELDS = ("position", "account_id", "version", "event_id", "type", "schema_version", "data",
                "idempotency_key", "amount_ucr", "balance_after_ucr", "occurred_at", "recorded_at")
#: What a query selects to rebuild events with ``row_to_event``.
EVENT_COLUMNS = ", ".join(EVENT_FIELDS)


def row_to_event(r: Any) -> Event:
    """An event from an ``events`` row (any query selecting ``EVENT_COLUMNS``; attribute access)."""
    return event_from_row(
        type_=r.type, schema_version=r.schema_version, data=r.data,
        envelope={"event_id": r.event_id, "account_id": r.account_id, "occurred_at": r.occurred_at,
                  "recorded_at": r.recorded_at, "idempotency_key": r.idempotency_key,
                  "amount_ucr": r.amount_ucr, "balance_after_ucr": r.balance_after_ucr},
    )


def event(account_id: str, r: Row) -> Event:
    """An event from a row of an account's events read by name (the balance read's recent entries)."""
    return event_from_row(
        type_=r["type"], schema_version=r["schema_version"], data=r["data"],
        envelope={"event_id": r["event_id"], "account_id": account_id, "occurred_at": r["occurred_at"],
                  "recorded_at": r["recorded_at"], "idempotency_key": r["idempotency_key"],
                  "amount_ucr": r["amount_ucr"], "balance_after_ucr": r["balance_after_ucr"]})

